package system_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/kafkaconn"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

const (
	scramUser     = "choreo"
	scramPassword = "s3cret-scram"
)

// TestSagaOverSASLSSL runs the whole system (every relay, consumer, topic creation and the readiness
// check) against a broker that accepts only SASL_SSL with SCRAM-SHA-512 and a certificate from a
// throwaway CA, and a saga completes. Under scripts/with-kafka.sh the broker is a real one of its own.
func TestSagaOverSASLSSL(t *testing.T) {
	t.Parallel()
	brokers, conn := secureKafka(t)
	cfg := baseConfig(t)
	cfg.Brokers = brokers
	cfg.Host.Kafka = conn
	h := start(t, cfg)
	if code, body := h.do("GET", "/readyz", nil, nil); code != 200 {
		t.Fatalf("/readyz over SASL_SSL: %d %s", code, body)
	}
	s := sku(t)
	h.putProduct(s, 250, 10)
	id := h.place(newOrder(h.customer("sasl"), s, 2, "tok_visa", "US"))
	if o := h.settled(id, "notification.sent"); o.Status != "CONFIRMED" {
		t.Fatalf("order over SASL_SSL ended %s/%s; timeline %v", o.Status, o.Reason, o.types())
	}

	// The same broker refuses a client without the credentials, so the saga above did use them.
	wrong := conn
	wrong.SASL = mustConn(t, kafkaconn.Settings{TLS: true, SASLMech: "SCRAM-SHA-512", SASLUser: scramUser, SASLPassword: "wrong"}).SASL
	if err := (kafkaadmin.Admin{Brokers: brokers, Conn: wrong}).Ping()(t.Context()); err == nil {
		t.Error("a client with a wrong SCRAM password passed the readiness check")
	}
}

// secureKafka starts a broker private to the test whose only client listener is SASL_SSL with
// SCRAM-SHA-512, and returns its address and the connection config that gets in: a real broker through
// scripts/kafka.sh under scripts/with-kafka.sh, the in-process kfake broker otherwise.
func secureKafka(t *testing.T) ([]string, kafkaconn.Config) {
	t.Helper()
	dir := t.TempDir()
	caFile, serverTLS := throwawayPKI(t, dir)
	conn := mustConn(t, kafkaconn.Settings{TLS: true, CAFile: caFile, SASLMech: "SCRAM-SHA-512", SASLUser: scramUser, SASLPassword: scramPassword})

	script := os.Getenv("CHOREO_KAFKA_SH")
	if script == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(serverTLS), kfake.EnableSASL(),
			kfake.Superuser("SCRAM-SHA-512", scramUser, scramPassword))
		if err != nil {
			t.Fatalf("start kfake with SASL_SSL: %v", err)
		}
		t.Cleanup(c.Close)
		return c.ListenAddrs(), conn
	}

	// A real broker: PLAINTEXT stays its inter-broker listener (and the script's readiness probe); clients
	// get the SASL_SSL listener only. The SCRAM user is created when the storage is formatted.
	addr := testenv.FreeAddr(t)
	props := filepath.Join(dir, "sasl-ssl.properties")
	jaas := "org.apache.kafka.common.security.scram.ScramLoginModule required;"
	content := fmt.Sprintf(`sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=%s
ssl.keystore.type=PEM
ssl.keystore.location=%s
ssl.client.auth=none
`, jaas, filepath.Join(dir, "server.pem"))
	if err := os.WriteFile(props, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	startRealKafka(t, script,
		"KAFKA_EXTRA_LISTENERS=SASL_SSL://"+addr,
		"KAFKA_EXTRA_PROPERTIES="+props,
		fmt.Sprintf("KAFKA_FORMAT_ARGS=--add-scram SCRAM-SHA-512=[name=%s,password=%s]", scramUser, scramPassword))
	return []string{addr}, conn
}

func mustConn(t *testing.T, s kafkaconn.Settings) kafkaconn.Config {
	t.Helper()
	c, err := kafkaconn.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// throwawayPKI makes a CA and a server certificate for 127.0.0.1 signed by it. It writes ca.pem (the CA
// certificate) and server.pem (the server's PKCS#8 key and certificate chain, the PEM keystore a Kafka
// broker reads) into dir, and returns the CA file and the server's TLS config.
func throwawayPKI(t *testing.T, dir string) (caFile string, server *tls.Config) {
	t.Helper()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "choreo test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey := newKey(t)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	srvCertPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.pem"), append(append(keyPEM, srvCertPEM...), caPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(srvCertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
