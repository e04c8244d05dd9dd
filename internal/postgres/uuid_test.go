package postgres_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// TestUUIDsTravelAsTheirBytes checks that a pool from Connect encodes and scans uuid.UUID for uuid and
// uuid[] without its text form, and that everything else about uuids is as pgx does it: NULLs through
// pointers, text parameters, other Go types.
func TestUUIDsTravelAsTheirBytes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, err := postgres.Connect(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	defer conn.Release()

	// The plans pgx chooses: without the registration a uuid.UUID is a driver.Valuer, formatted as text.
	m := conn.Conn().TypeMap()
	if plan := m.PlanEncode(pgtype.UUIDOID, pgtype.BinaryFormatCode, uuid.UUID{}); plan == nil || isDriverValuerPlan(plan) {
		t.Errorf("uuid.UUID is encoded by %T, want its bytes", plan)
	}
	if plan := m.PlanScan(pgtype.UUIDOID, pgtype.BinaryFormatCode, new(uuid.UUID)); plan == nil || isSQLScannerPlan(plan) {
		t.Errorf("*uuid.UUID is scanned by %T, want its bytes", plan)
	}

	a, b := uuid.New(), uuid.New()
	var text string
	if err := conn.QueryRow(ctx, "SELECT $1::uuid::text", a).Scan(&text); err != nil || text != a.String() {
		t.Errorf("$1::uuid::text = %q, %v; want %s", text, err, a)
	}
	var back uuid.UUID
	if err := conn.QueryRow(ctx, "SELECT $1::text::uuid", a.String()).Scan(&back); err != nil || back != a {
		t.Errorf("scan uuid = %s, %v; want %s", back, err, a)
	}
	var ids []uuid.UUID
	if err := conn.QueryRow(ctx, "SELECT $1::uuid[]", []uuid.UUID{a, b}).Scan(&ids); err != nil || !slices.Equal(ids, []uuid.UUID{a, b}) {
		t.Errorf("uuid[] = %v, %v; want [%s %s]", ids, err, a, b)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM unnest($1::uuid[]) u WHERE u = $2", []uuid.UUID{a, b, a}, a).Scan(&n); err != nil || n != 2 {
		t.Errorf("matches of a = %d, %v; want 2", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT $1::text", a).Scan(&text); err != nil || text != a.String() { // a text parameter
		t.Errorf("$1::text = %q, %v; want %s", text, err, a)
	}

	var none *uuid.UUID
	var isNull bool
	if err := conn.QueryRow(ctx, "SELECT $1::uuid IS NULL", none).Scan(&isNull); err != nil || !isNull {
		t.Errorf("a nil *uuid.UUID: IS NULL = %v, %v", isNull, err)
	}
	some := &b
	if err := conn.QueryRow(ctx, "SELECT NULL::uuid").Scan(&some); err != nil || some != nil {
		t.Errorf("NULL into **uuid.UUID = %v, %v; want nil", some, err)
	}
	if err := conn.QueryRow(ctx, "SELECT $1::uuid", a).Scan(&some); err != nil || some == nil || *some != a {
		t.Errorf("a uuid into **uuid.UUID = %v, %v; want %s", some, err, a)
	}
	back = a
	if err := conn.QueryRow(ctx, "SELECT NULL::uuid").Scan(&back); err != nil || back != uuid.Nil {
		t.Errorf("NULL into uuid.UUID = %s, %v; want the nil UUID", back, err)
	}
	var p pgtype.UUID // pgx's own type still works
	if err := conn.QueryRow(ctx, "SELECT $1::uuid", a).Scan(&p); err != nil || !p.Valid || p.Bytes != a {
		t.Errorf("pgtype.UUID = %v, %v; want %s", p, err, a)
	}
	// The simple protocol sends and returns text.
	if err := conn.QueryRow(ctx, "SELECT $1::uuid", pgx.QueryExecModeSimpleProtocol, a).Scan(&back); err != nil || back != a {
		t.Errorf("simple protocol: %s, %v; want %s", back, err, a)
	}
}

func isDriverValuerPlan(p pgtype.EncodePlan) bool {
	return typeName(p) == "*pgtype.encodePlanDriverValuer"
}

func isSQLScannerPlan(p pgtype.ScanPlan) bool {
	n := typeName(p)
	return n == "*pgtype.scanPlanCodecSQLScanner" || n == "*pgtype.scanPlanSQLScanner"
}

// BenchmarkEncodeUUID encodes the parameters of an inbox write (ten event ids) the way pgx does by
// default and with RegisterUUID, in the same run.
func BenchmarkEncodeUUID(b *testing.B) {
	ids := make([]uuid.UUID, 10)
	for i := range ids {
		ids[i] = uuid.New()
	}
	run := func(b *testing.B, m *pgtype.Map) {
		buf := make([]byte, 0, 512)
		for b.Loop() {
			var err error
			if buf, err = m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids, buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("pgx", func(b *testing.B) { run(b, pgtype.NewMap()) })
	b.Run("registered", func(b *testing.B) {
		m := pgtype.NewMap()
		postgres.RegisterUUID(m)
		run(b, m)
	})
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
