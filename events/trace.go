package events

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
)

// W3C Trace Context, version 00: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", ids not all zero.
var traceParentPattern = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$`)

// TraceID returns the trace id of a valid traceparent, or "" when it is not one.
func TraceID(traceParent string) string {
	m := traceParentPattern.FindStringSubmatch(traceParent)
	if m == nil || m[1] == "00000000000000000000000000000000" || m[2] == "0000000000000000" {
		return ""
	}
	return m[1]
}

// NewTraceParent starts a trace: a traceparent with random ids, sampled.
func NewTraceParent() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}
