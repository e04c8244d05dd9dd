package inventory

import (
	"context"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/httpapi"
)

// Product is a catalog entry. Stock is what can still be ordered.
type Product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Stock      int    `json:"stock"`
	Reserved   int    `json:"reserved"`
	Sold       int    `json:"sold"`
}

// ProductUpdate is the body of PUT /v1/products/{sku}.
type ProductUpdate struct {
	Name       *string `json:"name"`
	PriceCents *int64  `json:"price_cents"`
	Stock      *int    `json:"stock"`
}

func (u ProductUpdate) validate(sku string) []httpapi.FieldError {
	var errs []httpapi.FieldError
	if !events.IsIdentifier(sku) {
		errs = append(errs, httpapi.FieldError{Field: "sku", Detail: "1-128 letters, digits or . _ : -"})
	}
	if u.Name == nil || *u.Name == "" || len(*u.Name) > 200 {
		errs = append(errs, httpapi.FieldError{Field: "name", Detail: "required, at most 200 characters"})
	}
	if u.PriceCents == nil || *u.PriceCents < 0 {
		errs = append(errs, httpapi.FieldError{Field: "price_cents", Detail: "required, at least 0"})
	}
	if u.Stock == nil || *u.Stock < 0 || *u.Stock > 1_000_000_000 {
		errs = append(errs, httpapi.FieldError{Field: "stock", Detail: "required, between 0 and 1000000000"})
	}
	return errs
}

// Products lists the catalog by sku.
func (s *Service) Products(ctx context.Context) ([]Product, error) {
	rows, err := s.pool.Query(ctx, `SELECT sku, name, price_cents, stock, reserved, sold FROM products ORDER BY sku`)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Product])
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return ps, nil
}

// Put creates or replaces a product's name, price and available stock; reserved and sold units stay.
func (s *Service) Put(ctx context.Context, p Product) (Product, error) {
	err := s.pool.QueryRow(ctx, `
		INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4)
		ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock, updated_at = now()
		RETURNING reserved, sold`, p.SKU, p.Name, p.PriceCents, p.Stock).Scan(&p.Reserved, &p.Sold)
	if err != nil {
		return Product{}, fmt.Errorf("put product %s: %w", p.SKU, err)
	}
	return p, nil
}

// Seed adds the products that are not in the catalog (in pool's database) yet; existing ones are left alone.
func Seed(ctx context.Context, pool *pgxpool.Pool, products []Product) error {
	for _, p := range products {
		if _, err := pool.Exec(ctx, `INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4) ON CONFLICT (sku) DO NOTHING`,
			p.SKU, p.Name, p.PriceCents, p.Stock); err != nil {
			return fmt.Errorf("seed product %s: %w", p.SKU, err)
		}
	}
	return nil
}

// DemoCatalog is the catalog `choreo run` seeds.
func DemoCatalog() []Product {
	return []Product{
		{SKU: "KB-001", Name: "Mechanical keyboard", PriceCents: 8900, Stock: 100},
		{SKU: "MS-002", Name: "Wireless mouse", PriceCents: 2900, Stock: 250},
		{SKU: "MN-003", Name: "27-inch monitor", PriceCents: 32900, Stock: 20},
		{SKU: "HD-004", Name: "Noise-cancelling headphones", PriceCents: 19900, Stock: 5},
		{SKU: "CB-005", Name: "USB-C cable", PriceCents: 1200, Stock: 1000},
	}
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	ps, err := s.Products(r.Context())
	if err != nil {
		s.log.Error().Err(err).Msg("list products")
		httpapi.WriteError(w, r, err)
		return
	}
	if ps == nil {
		ps = []Product{}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"products": ps})
}

func (s *Service) handlePut(w http.ResponseWriter, r *http.Request) {
	// auth.Middleware lets only operators (or the operator token) through; this holds if it is mounted
	// under another policy too.
	if p, ok := auth.FromContext(r.Context()); ok && !p.Operator() {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusForbidden, "catalog changes need the operator role"))
		return
	}
	sku := r.PathValue("sku")
	var u ProductUpdate
	if p := httpapi.DecodeJSON(w, r, &u); p != nil {
		httpapi.WriteProblem(w, r, p)
		return
	}
	if errs := u.validate(sku); len(errs) > 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid(errs))
		return
	}
	p, err := s.Put(r.Context(), Product{SKU: sku, Name: *u.Name, PriceCents: *u.PriceCents, Stock: *u.Stock})
	if err != nil {
		s.log.Error().Err(err).Str("sku", sku).Msg("put product")
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, p)
}
