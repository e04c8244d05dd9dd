// Package kafkaconn is how every Kafka client choreo makes connects: TLS and SASL, built once from the
// settings and handed to the relay's writer, the consumers' readers, the admin client, the dead-letter
// tools and the readiness check. The zero Config connects in plaintext without authentication.
package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Config is the security of a Kafka connection.
type Config struct {
	TLS  *tls.Config    // nil: no TLS
	SASL sasl.Mechanism // nil: no authentication
	// Dial opens connections instead of the network (nil: the network); the embedded broker hands its
	// in-process clients one that connects in memory.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// Secured reports whether connections use TLS or SASL.
func (c Config) Secured() bool { return c.TLS != nil || c.SASL != nil }

// Dialer returns a dialer (for kafka-go Readers and Conns) with kafka.DefaultDialer's timeouts and this
// security.
func (c Config) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: c.tls(), SASLMechanism: c.SASL, DialFunc: c.Dial}
}

// Transport sets this security on t (a new transport when t is nil) and returns it, for kafka-go Writers
// and Clients.
func (c Config) Transport(t *kafka.Transport) *kafka.Transport {
	if t == nil {
		t = &kafka.Transport{}
	}
	t.TLS, t.SASL = c.tls(), c.SASL
	if c.Dial != nil {
		t.Dial = c.Dial
	}
	return t
}

// tls is a copy per client: kafka-go fills in ServerName on the config it is given.
func (c Config) tls() *tls.Config {
	if c.TLS == nil {
		return nil
	}
	return c.TLS.Clone()
}

// Settings are the connection settings as an operator writes them (KAFKA_TLS, KAFKA_SASL_* ...).
type Settings struct {
	TLS          bool
	CAFile       string // PEM roots to trust instead of the system's
	CertFile     string // PEM client certificate, for brokers that authenticate clients by TLS
	KeyFile      string // its PEM private key
	SASLMech     string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: none
	SASLUser     string
	SASLPassword string
}

// New builds the Config the settings describe, reading the certificate files.
func New(s Settings) (Config, error) {
	var c Config
	if !s.TLS && (s.CAFile != "" || s.CertFile != "" || s.KeyFile != "") {
		return Config{}, errors.New("KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE need KAFKA_TLS=true")
	}
	if s.TLS {
		t, err := tlsConfig(s)
		if err != nil {
			return Config{}, err
		}
		c.TLS = t
	}
	m, err := mechanism(s)
	if err != nil {
		return Config{}, err
	}
	c.SASL = m
	return c, nil
}

func tlsConfig(s Settings) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read KAFKA_TLS_CA_FILE: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("KAFKA_TLS_CA_FILE %s holds no PEM certificate", s.CAFile)
		}
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return nil, errors.New("KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together")
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

func mechanism(s Settings) (sasl.Mechanism, error) {
	if s.SASLMech == "" {
		if s.SASLUser != "" || s.SASLPassword != "" {
			return nil, errors.New("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD need KAFKA_SASL_MECHANISM")
		}
		return nil, nil
	}
	if s.SASLUser == "" || s.SASLPassword == "" {
		return nil, fmt.Errorf("KAFKA_SASL_MECHANISM %s needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", s.SASLMech)
	}
	switch strings.ToUpper(s.SASLMech) {
	case "PLAIN":
		return plain.Mechanism{Username: s.SASLUser, Password: s.SASLPassword}, nil
	case "SCRAM-SHA-256":
		return scramMechanism(scram.SHA256, s)
	case "SCRAM-SHA-512":
		return scramMechanism(scram.SHA512, s)
	}
	return nil, fmt.Errorf("KAFKA_SASL_MECHANISM %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMech)
}

func scramMechanism(algo scram.Algorithm, s Settings) (sasl.Mechanism, error) {
	m, err := scram.Mechanism(algo, s.SASLUser, s.SASLPassword)
	if err != nil {
		return nil, fmt.Errorf("KAFKA_SASL_MECHANISM %s: %w", s.SASLMech, err)
	}
	return m, nil
}
