package kafkaconn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		s        Settings
		wantErr  string // empty: no error
		tls      bool
		mechName string
	}{
		{name: "zero is plaintext", s: Settings{}},
		{name: "tls with the system roots", s: Settings{TLS: true}, tls: true},
		{name: "scram-sha-512 over tls", s: Settings{TLS: true, SASLMech: "SCRAM-SHA-512", SASLUser: "u", SASLPassword: "p"}, tls: true, mechName: "SCRAM-SHA-512"},
		{name: "scram-sha-256, name in any case", s: Settings{SASLMech: "scram-sha-256", SASLUser: "u", SASLPassword: "p"}, mechName: "SCRAM-SHA-256"},
		{name: "plain", s: Settings{SASLMech: "PLAIN", SASLUser: "u", SASLPassword: "p"}, mechName: "PLAIN"},
		{name: "unknown mechanism", s: Settings{SASLMech: "GSSAPI", SASLUser: "u", SASLPassword: "p"}, wantErr: "want PLAIN"},
		{name: "mechanism without password", s: Settings{SASLMech: "PLAIN", SASLUser: "u"}, wantErr: "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"},
		{name: "user without mechanism", s: Settings{SASLUser: "u", SASLPassword: "p"}, wantErr: "need KAFKA_SASL_MECHANISM"},
		{name: "ca file without tls", s: Settings{CAFile: notPEM}, wantErr: "need KAFKA_TLS=true"},
		{name: "ca file that is not pem", s: Settings{TLS: true, CAFile: notPEM}, wantErr: "holds no PEM certificate"},
		{name: "missing ca file", s: Settings{TLS: true, CAFile: notPEM + ".gone"}, wantErr: "read KAFKA_TLS_CA_FILE"},
		{name: "cert without key", s: Settings{TLS: true, CertFile: notPEM}, wantErr: "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := c.TLS != nil; got != tt.tls {
				t.Errorf("TLS set = %v, want %v", got, tt.tls)
			}
			name := ""
			if c.SASL != nil {
				name = c.SASL.Name()
			}
			if name != tt.mechName {
				t.Errorf("SASL = %q, want %q", name, tt.mechName)
			}
			if c.Secured() != (tt.tls || tt.mechName != "") {
				t.Errorf("Secured() = %v", c.Secured())
			}
			d, tr := c.Dialer(), c.Transport(nil)
			if (d.TLS != nil) != tt.tls || (tr.TLS != nil) != tt.tls || d.SASLMechanism != c.SASL || tr.SASL != c.SASL {
				t.Errorf("Dialer/Transport do not carry the config: dialer TLS %v SASL %v, transport TLS %v SASL %v", d.TLS, d.SASLMechanism, tr.TLS, tr.SASL)
			}
		})
	}
}
