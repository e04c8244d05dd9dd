package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
)

// Bounds of the message browser.
const (
	defaultLimit = 50
	maxLimit     = 500
	keyScan      = 20000 // messages of one partition scanned for a key
	tailEvery    = 500 * time.Millisecond
	tailBatch    = 200 // messages per partition per tail step
)

// Message is one Kafka message, decoded for display.
type Message struct {
	Topic     string            `json:"topic"`
	Partition int               `json:"partition"`
	Offset    int64             `json:"offset"`
	Time      time.Time         `json:"time"`
	Key       string            `json:"key"`
	Headers   []Header          `json:"headers"`
	Event     map[string]string `json:"event,omitempty"` // CloudEvents attributes from the ce_* headers
	Payload   string            `json:"payload"`         // pretty-printed when it is JSON
	JSON      bool              `json:"json"`
}

// Header is a message header.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func decode(m kafka.Message) Message {
	out := Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time.UTC(), Key: string(m.Key)}
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, Header{Key: h.Key, Value: string(h.Value)})
		if attr, ok := strings.CutPrefix(h.Key, "ce_"); ok {
			if out.Event == nil {
				out.Event = map[string]string{}
			}
			out.Event[attr] = string(h.Value)
		}
	}
	var pretty bytes.Buffer
	if json.Valid(m.Value) && json.Indent(&pretty, m.Value, "", "  ") == nil {
		out.Payload, out.JSON = pretty.String(), true
	} else {
		out.Payload = string(m.Value)
	}
	return out
}

func header(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Browse is one page of the message browser.
type Browse struct {
	Topic    string    `json:"topic"`
	Mode     string    `json:"mode"` // newest, offset, time, key
	Messages []Message `json:"messages"`
	// Next is the query of the following page, "" when there is none.
	Next string `json:"next,omitempty"`
	// Note says what was scanned when the scan was bounded.
	Note string `json:"note,omitempty"`
}

// handleMessages serves one page of a topic: the newest messages; by partition from an offset
// (partition, offset); from a time (from, RFC 3339); or the messages with a key (key). Every read is
// bounded by limit (and a key's scan by keyScan messages of its partition).
func (c *Console) handleMessages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	b, err := c.browse(r.Context(), q)
	if err != nil {
		if problem, ok := err.(*httpapi.Problem); ok {
			httpapi.WriteProblem(w, r, problem)
			return
		}
		c.cfg.Log.Error().Err(err).Msg("console: browse messages")
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadGateway, err.Error()))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, b)
}

func (c *Console) browse(ctx context.Context, q url.Values) (Browse, error) {
	name := q.Get("topic")
	if name == "" || !strings.HasPrefix(name, c.cfg.Namespace) {
		return Browse{}, httpapi.NewProblem(http.StatusBadRequest, "topic is required (one of the console's topics)")
	}
	limit := defaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return Browse{}, httpapi.NewProblem(http.StatusBadRequest, fmt.Sprintf("limit must be between 1 and %d", maxLimit))
		}
		limit = n
	}
	topic, err := c.in.Topic(ctx, name)
	if err != nil {
		return Browse{}, httpapi.NewProblem(http.StatusNotFound, err.Error())
	}
	switch {
	case q.Get("key") != "":
		return c.byKey(ctx, topic, q.Get("key"), q.Get("before"), limit)
	case q.Get("from") != "":
		at, err := time.Parse(time.RFC3339Nano, q.Get("from"))
		if err != nil {
			if at, err = time.ParseInLocation("2006-01-02T15:04", q.Get("from"), time.UTC); err != nil {
				return Browse{}, httpapi.NewProblem(http.StatusBadRequest, "from must be a time like 2006-01-02T15:04:05Z")
			}
		}
		return c.fromTime(ctx, topic, at, limit)
	case q.Get("partition") != "":
		p, err := strconv.Atoi(q.Get("partition"))
		if err != nil || p < 0 || p >= len(topic.Partitions) {
			return Browse{}, httpapi.NewProblem(http.StatusBadRequest, fmt.Sprintf("partition must be between 0 and %d", len(topic.Partitions)-1))
		}
		part := topic.Partitions[p]
		offset := max(part.Start, part.End-int64(limit))
		if s := q.Get("offset"); s != "" {
			if offset, err = strconv.ParseInt(s, 10, 64); err != nil || offset < 0 {
				return Browse{}, httpapi.NewProblem(http.StatusBadRequest, "offset must be a non-negative integer")
			}
			offset = max(offset, part.Start)
		}
		msgs, _, err := c.in.Read(ctx, topic.Name, p, offset, limit, 0)
		b := Browse{Topic: topic.Name, Mode: "offset", Messages: decodeAll(msgs)}
		if n := len(msgs); n > 0 && msgs[n-1].Offset+1 < part.End {
			b.Next = url.Values{"topic": {topic.Name}, "partition": {strconv.Itoa(p)}, "offset": {strconv.FormatInt(msgs[n-1].Offset+1, 10)}}.Encode()
		}
		return b, err
	default:
		b := Browse{Topic: topic.Name, Mode: "newest"}
		var all []kafka.Message
		for _, p := range topic.Partitions {
			msgs, _, err := c.in.Read(ctx, topic.Name, p.ID, max(p.Start, p.End-int64(limit)), limit, 0)
			if err != nil {
				return b, err
			}
			all = append(all, msgs...)
		}
		slices.SortFunc(all, func(a, b kafka.Message) int { return b.Time.Compare(a.Time) })
		b.Messages = decodeAll(all[:min(limit, len(all))])
		return b, nil
	}
}

// fromTime returns the first limit messages at or after at, over every partition, oldest first.
func (c *Console) fromTime(ctx context.Context, topic kafkaadmin.TopicInfo, at time.Time, limit int) (Browse, error) {
	b := Browse{Topic: topic.Name, Mode: "time"}
	ids := make([]int, len(topic.Partitions))
	for i, p := range topic.Partitions {
		ids[i] = p.ID
	}
	offs, err := c.in.OffsetsAt(ctx, topic.Name, ids, at)
	if err != nil {
		return b, err
	}
	var all []kafka.Message
	for p, o := range offs {
		if o < 0 {
			continue
		}
		msgs, _, err := c.in.Read(ctx, topic.Name, p, o, limit, 0)
		if err != nil {
			return b, err
		}
		all = append(all, msgs...)
	}
	slices.SortFunc(all, func(a, b kafka.Message) int { return a.Time.Compare(b.Time) })
	b.Messages = decodeAll(all[:min(limit, len(all))])
	return b, nil
}

// byKey returns the messages with key, from the one partition the key hashes to. An order id is a UUIDv7,
// which carries the time the order was placed, so the scan starts a minute before it; any other key is
// looked for among the partition's last keyScan messages (or those before the offset before).
func (c *Console) byKey(ctx context.Context, topic kafkaadmin.TopicInfo, key, before string, limit int) (Browse, error) {
	b := Browse{Topic: topic.Name, Mode: "key"}
	msgs, note, err := c.scanKey(ctx, topic, key, before, limit)
	b.Messages, b.Note = decodeAll(msgs), note
	return b, err
}

func (c *Console) scanKey(ctx context.Context, topic kafkaadmin.TopicInfo, key, before string, limit int) ([]kafka.Message, string, error) {
	p := topic.Partitions[kafkaadmin.PartitionOf([]byte(key), len(topic.Partitions))]
	end := p.End
	if before != "" {
		if n, err := strconv.ParseInt(before, 10, 64); err == nil && n < end {
			end = n
		}
	}
	from := max(p.Start, end-keyScan)
	if id, err := uuid.Parse(key); err == nil && id.Version() == 7 && before == "" {
		sec, nsec := id.Time().UnixTime()
		offs, err := c.in.OffsetsAt(ctx, topic.Name, []int{p.ID}, time.Unix(sec, nsec).Add(-time.Minute))
		if err != nil {
			return nil, "", err
		}
		if o, ok := offs[p.ID]; ok {
			from = o
			if o < 0 {
				from = end
			}
		}
	}
	var out []kafka.Message
	offset := from
	for offset < end && offset-from < keyScan && len(out) < limit {
		msgs, _, err := c.in.Read(ctx, topic.Name, p.ID, offset, min(1000, int(end-offset)), 0)
		if err != nil {
			return out, "", err
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if m.Offset >= end {
				break
			}
			if string(m.Key) == key && len(out) < limit {
				out = append(out, m)
			}
			offset = m.Offset + 1
		}
	}
	note := fmt.Sprintf("key %q is on partition %d; scanned offsets %d to %d", key, p.ID, from, offset)
	if from > p.Start {
		note += fmt.Sprintf(" (older messages from offset %d are not scanned)", p.Start)
	}
	return out, note, nil
}

func decodeAll(msgs []kafka.Message) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = decode(m)
	}
	return out
}

// handleTail streams every new message of a topic as an SSE "message" event, from the moment it is asked.
func (c *Console) handleTail(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("topic")
	if name == "" || !strings.HasPrefix(name, c.cfg.Namespace) {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadRequest, "topic is required"))
		return
	}
	topic, err := c.in.Topic(r.Context(), name)
	if err != nil {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, err.Error()))
		return
	}
	next := map[int]int64{}
	for _, p := range topic.Partitions {
		next[p.ID] = p.End
	}
	s, ok := c.openStream(w, r)
	if !ok {
		return
	}
	defer s.close()
	if err := s.send("ready", map[string]any{"topic": name, "from": next}); err != nil {
		return
	}
	for s.wait(tailEvery) {
		topic, err := c.in.Topic(r.Context(), name)
		if err != nil {
			_ = s.send("problem", map[string]string{"error": err.Error()})
			continue
		}
		for _, p := range topic.Partitions {
			if next[p.ID] >= p.End {
				continue
			}
			msgs, _, err := c.in.Read(r.Context(), name, p.ID, next[p.ID], tailBatch, 0)
			if err != nil {
				_ = s.send("problem", map[string]string{"error": err.Error()})
				continue
			}
			for _, m := range msgs {
				if err := s.send("message", decode(m)); err != nil {
					return
				}
				next[p.ID] = m.Offset + 1
			}
		}
	}
}
