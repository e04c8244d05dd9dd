package events

import "fmt"

// UnknownTypeError is returned when no payload type is registered for an event's type and version.
type UnknownTypeError struct {
	Type    string
	Version int
}

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("unknown event type %q version %d", e.Type, e.Version)
}

// DecodeError is returned when an event's payload does not decode into, or validate as, its registered type.
type DecodeError struct {
	Type    string
	Version int
	Err     error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s v%d payload: %v", e.Type, e.Version, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// FormatError is returned when a message is not a well-formed event envelope.
type FormatError struct {
	Reason string
}

func (e *FormatError) Error() string { return "malformed event: " + e.Reason }
