package loadgen

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/choreo-dev/choreo/events"
)

// Outcome is how an order's saga ends: "confirmed", or the reason of its cancellation.
type Outcome string

// The outcomes the generator can ask for, each driven deterministically through the order it sends.
const (
	Confirmed       Outcome = "confirmed"
	PaymentDeclined Outcome = Outcome(events.ReasonPaymentDeclined) // payment_token "tok_decline"
	OutOfStock      Outcome = Outcome(events.ReasonOutOfStock)      // a line of the product seeded with stock 0
	ShippingFailed  Outcome = Outcome(events.ReasonShippingFailed)  // shipping country "XX"
)

// Outcomes lists the outcomes a Mix may ask for, in report order.
var outcomes = []Outcome{Confirmed, PaymentDeclined, OutOfStock, ShippingFailed}

// Mix is the share of each outcome among the offered orders; shares need not add up to 1 (they are
// normalised), and a missing outcome is never asked for.
type Mix map[Outcome]float64

// ParseMix reads "confirmed=85,payment_declined=5,out_of_stock=5,shipping_failed=5".
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want outcome=share", part)
		}
		o := Outcome(strings.TrimSpace(name))
		if !slices.Contains(outcomes, o) {
			return nil, fmt.Errorf("mix: unknown outcome %q (want one of %v)", o, outcomes)
		}
		share, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || share < 0 {
			return nil, fmt.Errorf("mix: share of %s %q: want a number >= 0", o, val)
		}
		m[o] += share
	}
	return m, m.validate()
}

func (m Mix) validate() error {
	total := 0.0
	for o, s := range m {
		if !slices.Contains(outcomes, o) {
			return fmt.Errorf("mix: unknown outcome %q", o)
		}
		total += s
	}
	if total <= 0 {
		return fmt.Errorf("mix: no outcome has a share")
	}
	return nil
}

// share is o's normalised share.
func (m Mix) share(o Outcome) float64 {
	total := 0.0
	for _, s := range m {
		total += s
	}
	return m[o] / total
}

// String is the mix in ParseMix's syntax, as percentages.
func (m Mix) String() string {
	var parts []string
	for _, o := range outcomes {
		if m[o] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%g", o, 100*m.share(o)))
		}
	}
	return strings.Join(parts, ",")
}

// Catalog is the set of products the generator seeds and orders from.
type Catalog struct {
	Prefix   string  // sku prefix, so the generator's products stand apart from the demo catalog
	Products int     // ordinary products, each seeded with a very large stock
	HotShare float64 // share of orders that include the hot product (0..1); 0 seeds no hot product
	Lines    int     // lines per order (the hot product, when drawn, is one of them)
}

// sku names: PREFIX-P01.., PREFIX-HOT, PREFIX-NOSTOCK.
func (c Catalog) product(i int) string { return fmt.Sprintf("%sP%02d", c.Prefix, i+1) }
func (c Catalog) hot() string          { return c.Prefix + "HOT" }
func (c Catalog) noStock() string      { return c.Prefix + "NOSTOCK" }

// seedStock is stock enough for every confirmed order of any run (the most the inventory accepts).
const seedStock = 1_000_000_000

// seeds lists every product to PUT before a run with its stock.
func (c Catalog) seeds() map[string]int {
	s := map[string]int{c.noStock(): 0}
	for i := range c.Products {
		s[c.product(i)] = seedStock
	}
	if c.HotShare > 0 {
		s[c.hot()] = seedStock
	}
	return s
}

func (c Catalog) validate() error {
	switch {
	case c.Products < 1:
		return fmt.Errorf("products: at least 1")
	case c.HotShare < 0 || c.HotShare > 1:
		return fmt.Errorf("hot share %g: want 0..1", c.HotShare)
	case c.Lines < 1 || c.Lines > c.Products:
		return fmt.Errorf("lines %d: want 1..products (%d)", c.Lines, c.Products)
	case !events.IsIdentifier(c.noStock()):
		return fmt.Errorf("sku prefix %q: letters, digits or . _ : -", c.Prefix)
	}
	return nil
}

// planned is one order the generator will offer: its body and the outcome it must end in.
type planned struct {
	want Outcome
	body placeRequest
}

// placeRequest is the body of POST /v1/orders.
type placeRequest struct {
	CustomerID      string         `json:"customer_id"`
	Items           []events.Item  `json:"items"`
	PaymentToken    string         `json:"payment_token"`
	ShippingAddress events.Address `json:"shipping_address"`
}

// planner draws the orders of a run. Outcomes follow the mix exactly (each next order takes the outcome
// furthest behind its share, so any prefix of n orders is within one order of n × share); products are
// drawn at random from a seeded source, so a run is reproducible.
type planner struct {
	mix     Mix
	catalog Catalog
	rng     *rand.Rand
	counts  map[Outcome]int
	n       int
	// customers are the registered customers the orders are placed for, in turn (none: "load-NNN",
	// ids the customer service rejects).
	customers []string
}

func newPlanner(mix Mix, catalog Catalog, seed uint64) *planner {
	return &planner{mix: mix, catalog: catalog, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), counts: map[Outcome]int{}}
}

// next plans the next order; it is not safe for concurrent use.
func (p *planner) next() planned {
	p.n++
	want, behind := Outcome(""), 0.0
	for _, o := range outcomes {
		if d := p.mix.share(o)*float64(p.n) - float64(p.counts[o]); p.mix[o] > 0 && (want == "" || d > behind) {
			want, behind = o, d
		}
	}
	p.counts[want]++

	var skus []string
	lines := p.catalog.Lines
	if p.catalog.HotShare > 0 && p.rng.Float64() < p.catalog.HotShare {
		skus = append(skus, p.catalog.hot())
		lines--
	}
	for _, i := range p.rng.Perm(p.catalog.Products)[:lines] {
		skus = append(skus, p.catalog.product(i))
	}
	if want == OutOfStock {
		skus[len(skus)-1] = p.catalog.noStock()
	}
	slices.Sort(skus)
	items := make([]events.Item, len(skus))
	for i, s := range skus {
		items[i] = events.Item{SKU: s, Quantity: 1}
	}
	token, country := "tok_visa", "US"
	switch want {
	case PaymentDeclined:
		token = "tok_decline"
	case ShippingFailed:
		country = "XX"
	}
	customer := fmt.Sprintf("load-%03d", p.n%1000)
	if len(p.customers) > 0 {
		customer = p.customers[p.n%len(p.customers)]
	}
	return planned{want: want, body: placeRequest{
		CustomerID:   customer,
		Items:        items,
		PaymentToken: token,
		ShippingAddress: events.Address{
			Name: "Load Test", Line1: "1 Loop Rd", City: "Springfield", PostalCode: "12345", Country: country,
		},
	}}
}
