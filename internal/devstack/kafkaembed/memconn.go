package kafkaembed

import (
	"context"
	"errors"
	"net"
	"sync"
)

// memListener is the broker's listener: it accepts TCP connections from other processes and in-memory
// ones from clients in this process (Broker.Dial), which skip the kernel's network stack.
type memListener struct {
	net.Listener
	mem    chan net.Conn
	tcp    chan accepted
	closed chan struct{}
	once   sync.Once
}

type accepted struct {
	conn net.Conn
	err  error
}

func newMemListener(l net.Listener) *memListener {
	m := &memListener{Listener: l, mem: make(chan net.Conn), tcp: make(chan accepted), closed: make(chan struct{})}
	go m.acceptTCP()
	return m
}

func (m *memListener) acceptTCP() {
	for {
		c, err := m.Listener.Accept()
		select {
		case m.tcp <- accepted{c, err}:
		case <-m.closed:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if err != nil {
			return
		}
	}
}

func (m *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.mem:
		return c, nil
	case a := <-m.tcp:
		return a.conn, a.err
	case <-m.closed:
		return nil, net.ErrClosed
	}
}

func (m *memListener) Close() error {
	m.once.Do(func() { close(m.closed) })
	return m.Listener.Close()
}

// dial hands the listener the server's end of an in-memory connection and returns the client's.
func (m *memListener) dial(ctx context.Context) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case m.mem <- server:
		return client, nil
	case <-m.closed:
	case <-ctx.Done():
	}
	_ = server.Close()
	_ = client.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, errors.New("kafka broker closed")
}
