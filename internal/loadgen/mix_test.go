package loadgen

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("confirmed=70, payment_declined=10,out_of_stock=10,shipping_failed=10")
	if err != nil {
		t.Fatal(err)
	}
	if m.share(Confirmed) != 0.7 || m.share(ShippingFailed) != 0.1 {
		t.Fatalf("shares: %v", m)
	}
	if m.String() != "confirmed=70,payment_declined=10,out_of_stock=10,shipping_failed=10" {
		t.Fatalf("String: %s", m)
	}
	for _, bad := range []string{"", "confirmed", "confirmed=x", "confirmed=-1", "expired=5", "confirmed=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

func TestPlannerFollowsTheMixExactly(t *testing.T) {
	mix := Mix{Confirmed: 1, PaymentDeclined: 1, OutOfStock: 1, ShippingFailed: 1}
	cat := Catalog{Prefix: "T-", Products: 20, HotShare: 0.3, Lines: 3}
	p := newPlanner(mix, cat, 1)
	counts := map[Outcome]int{}
	hot := 0
	for n := 1; n <= 400; n++ {
		o := p.next()
		counts[o.want]++
		for _, c := range outcomes { // any prefix is within one order of its share
			if d := math.Abs(float64(counts[c]) - float64(n)/4); d > 1 {
				t.Fatalf("after %d orders %s has %d", n, c, counts[c])
			}
		}
		b := o.body
		var skus []string
		for _, it := range b.Items {
			skus = append(skus, it.SKU)
			if it.Quantity != 1 {
				t.Fatalf("quantity %d", it.Quantity)
			}
		}
		if len(skus) != 3 || len(slices.Compact(slices.Clone(skus))) != 3 {
			t.Fatalf("order %d lines %v: want 3 distinct", n, skus)
		}
		if slices.Contains(skus, cat.hot()) {
			hot++
		}
		wantToken, wantCountry, wantNoStock := "tok_visa", "US", false
		switch o.want {
		case PaymentDeclined:
			wantToken = "tok_decline"
		case ShippingFailed:
			wantCountry = "XX"
		case OutOfStock:
			wantNoStock = true
		}
		if b.PaymentToken != wantToken || b.ShippingAddress.Country != wantCountry || slices.Contains(skus, cat.noStock()) != wantNoStock {
			t.Fatalf("%s order drives the wrong failure: %+v", o.want, b)
		}
		for _, s := range skus {
			if _, seeded := cat.seeds()[s]; !seeded {
				t.Fatalf("order names %s, which is not seeded", s)
			}
		}
	}
	if hot < 80 || hot > 160 { // 30% of 400, drawn at random (with a fixed seed)
		t.Fatalf("%d of 400 orders include the hot product, want about 120", hot)
	}
}

func TestPlannerOnlyAsksForOutcomesInTheMix(t *testing.T) {
	p := newPlanner(Mix{Confirmed: 9, ShippingFailed: 1}, Catalog{Prefix: "T-", Products: 1, Lines: 1}, 7)
	counts := map[Outcome]int{}
	for range 100 {
		counts[p.next().want]++
	}
	if counts[Confirmed] != 90 || counts[ShippingFailed] != 10 || len(counts) != 2 {
		t.Fatalf("counts %v", counts)
	}
}

func TestCatalogSeeds(t *testing.T) {
	seeds := Catalog{Prefix: "L-", Products: 3, HotShare: 0.5, Lines: 1}.seeds()
	if len(seeds) != 5 || seeds["L-NOSTOCK"] != 0 || seeds["L-HOT"] != seedStock || seeds["L-P03"] != seedStock {
		t.Fatalf("seeds %v", seeds)
	}
	if _, hot := (Catalog{Prefix: "L-", Products: 3, Lines: 1}).seeds()["L-HOT"]; hot {
		t.Fatal("no hot share, yet a hot product seeded")
	}
	for _, bad := range []Catalog{{Prefix: "L-", Products: 0, Lines: 1}, {Prefix: "L-", Products: 2, Lines: 3}, {Prefix: "L-", Products: 2, Lines: 1, HotShare: 2}, {Prefix: "bad prefix", Products: 1, Lines: 1}} {
		if err := bad.validate(); err == nil || strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%+v accepted", bad)
		}
	}
}
