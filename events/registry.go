package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

type typeKey struct {
	name    string
	version int
}

// Registry maps each (type, version) to its payload struct and decodes envelopes into them. A payload of
// an older version that implements Upcaster is turned into the current version on decode, so handlers
// are written against the current version only and keep working while producers still emit the old one
// (a rolling upgrade) and when stored events of the old version are replayed.
type Registry struct {
	types map[typeKey]reflect.Type
}

// NewRegistry registers the given payload prototypes. A (type, version) registered twice is an error.
func NewRegistry(prototypes ...Payload) (*Registry, error) {
	r := &Registry{types: make(map[typeKey]reflect.Type, len(prototypes))}
	for _, p := range prototypes {
		k := typeKey{p.EventType(), p.EventVersion()}
		if _, dup := r.types[k]; dup {
			return nil, fmt.Errorf("register %s v%d: registered twice", k.name, k.version)
		}
		t := reflect.TypeOf(p)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		r.types[k] = t
	}
	return r, nil
}

// Known reports whether (eventType, version) is registered.
func (r *Registry) Known(eventType string, version int) bool {
	_, ok := r.types[typeKey{eventType, version}]
	return ok
}

// Decode returns e's payload as its registered struct (a value, not a pointer). Unknown types yield
// *UnknownTypeError; payloads that are not valid JSON for the struct or fail its Validate yield *DecodeError.
func (r *Registry) Decode(e Envelope) (Payload, error) {
	t, ok := r.types[typeKey{e.Type, e.Version}]
	if !ok {
		return nil, &UnknownTypeError{Type: e.Type, Version: e.Version}
	}
	ptr := reflect.New(t)
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	if err := dec.Decode(ptr.Interface()); err != nil {
		return nil, &DecodeError{Type: e.Type, Version: e.Version, Err: err}
	}
	if dec.More() {
		return nil, &DecodeError{Type: e.Type, Version: e.Version, Err: fmt.Errorf("trailing data after payload")}
	}
	if v, ok := ptr.Interface().(validator); ok {
		if err := v.Validate(); err != nil {
			return nil, &DecodeError{Type: e.Type, Version: e.Version, Err: err}
		}
	}
	p := ptr.Elem().Interface().(Payload)
	for {
		u, ok := p.(Upcaster)
		if !ok {
			return p, nil
		}
		p = u.Upcast()
	}
}

// Upcaster is implemented by the payload struct of an older version of an event type: Upcast returns the
// same event as the next version.
type Upcaster interface {
	Upcast() Payload
}
