package kafkaadmin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Inspector reads a cluster's topics, messages and consumer groups for people to look at. It never joins,
// commits or otherwise changes a consumer group: messages are fetched at explicit offsets, group state is
// read with ListGroups, DescribeGroups and OffsetFetch.
type Inspector struct {
	c       *client
	brokers []string
}

// NewInspector returns an Inspector of the cluster at brokers over plaintext; Close releases its connections.
func NewInspector(brokers []string) (*Inspector, error) { return Admin{Brokers: brokers}.Inspector() }

// Inspector returns an Inspector of a's cluster, connected with a's TLS and SASL; Close releases its
// connections.
func (a Admin) Inspector() (*Inspector, error) {
	c, err := a.newClient()
	if err != nil {
		return nil, err
	}
	c.Client.Timeout = 10 * time.Second
	return &Inspector{c: c, brokers: a.Brokers}, nil
}

// Close releases the Inspector's connections.
func (i *Inspector) Close() { i.c.close() }

// PartitionInfo is one partition of a topic and the offsets it holds.
type PartitionInfo struct {
	ID     int   `json:"id"`
	Leader int   `json:"leader"`
	Start  int64 `json:"start"` // the offset of the oldest message still held
	End    int64 `json:"end"`   // the offset the next message will get
}

// Messages is how many messages the partition holds now.
func (p PartitionInfo) Messages() int64 { return p.End - p.Start }

// TopicInfo is a topic with its partitions, sorted by id.
type TopicInfo struct {
	Name       string          `json:"name"`
	Partitions []PartitionInfo `json:"partitions"`
}

// Topics describes every topic whose name keep accepts (nil keeps all but Kafka's internal ones), sorted by name.
func (i *Inspector) Topics(ctx context.Context, keep func(string) bool) ([]TopicInfo, error) {
	meta, err := i.c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("fetch metadata: %w", err)
	}
	var out []TopicInfo
	for _, t := range meta.Topics {
		if t.Internal || strings.HasPrefix(t.Name, "__") || t.Error != nil || (keep != nil && !keep(t.Name)) {
			continue
		}
		ti := TopicInfo{Name: t.Name}
		for _, p := range t.Partitions {
			ti.Partitions = append(ti.Partitions, PartitionInfo{ID: p.ID, Leader: p.Leader.ID})
		}
		slices.SortFunc(ti.Partitions, func(a, b PartitionInfo) int { return a.ID - b.ID })
		out = append(out, ti)
	}
	slices.SortFunc(out, func(a, b TopicInfo) int { return strings.Compare(a.Name, b.Name) })
	if len(out) == 0 {
		return out, nil
	}
	starts, err := i.listOffsets(ctx, out, kafka.FirstOffset)
	if err != nil {
		return nil, err
	}
	ends, err := i.listOffsets(ctx, out, kafka.LastOffset)
	if err != nil {
		return nil, err
	}
	for ti := range out {
		for pi := range out[ti].Partitions {
			p := &out[ti].Partitions[pi]
			p.Start, p.End = starts[out[ti].Name][p.ID], ends[out[ti].Name][p.ID]
		}
	}
	return out, nil
}

// Topic describes one topic.
func (i *Inspector) Topic(ctx context.Context, name string) (TopicInfo, error) {
	ts, err := i.Topics(ctx, func(n string) bool { return n == name })
	if err != nil {
		return TopicInfo{}, err
	}
	if len(ts) != 1 {
		return TopicInfo{}, fmt.Errorf("topic %s: %w", name, kafka.UnknownTopicOrPartition)
	}
	return ts[0], nil
}

// OffsetsAt returns, for each given partition of topic, the offset of the first message with a timestamp
// at or after t, or -1 where there is none yet.
func (i *Inspector) OffsetsAt(ctx context.Context, topic string, partitions []int, t time.Time) (map[int]int64, error) {
	ti := TopicInfo{Name: topic}
	for _, p := range partitions {
		ti.Partitions = append(ti.Partitions, PartitionInfo{ID: p})
	}
	offs, err := i.listOffsets(ctx, []TopicInfo{ti}, t.UnixMilli())
	if err != nil {
		return nil, err
	}
	return offs[topic], nil
}

// listOffsets asks for one kind of offset (kafka.FirstOffset, kafka.LastOffset or a Unix time in
// milliseconds) of every partition of topics. kafka-go files the answer by the timestamp the broker
// returns with it (-1 for the earliest and the latest alike), so the one offset is taken wherever it
// landed; -1 means the broker has no such offset (no message at or after the time).
func (i *Inspector) listOffsets(ctx context.Context, topics []TopicInfo, ts int64) (map[string]map[int]int64, error) {
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range topics {
		for _, p := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.OffsetRequest{Partition: p.ID, Timestamp: ts})
		}
	}
	resp, err := i.c.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	out := map[string]map[int]int64{}
	for topic, parts := range resp.Topics {
		out[topic] = map[int]int64{}
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, p.Error)
			}
			v := p.LastOffset
			for o := range p.Offsets {
				v = o
			}
			if ts == kafka.FirstOffset && v == -1 {
				v = p.FirstOffset
			}
			out[topic][p.Partition] = v
		}
	}
	return out, nil
}

// Read fetches up to max messages of topic's partition from offset on, in one or a few fetches of at most
// maxBytes each, stopping at the partition's end; it returns them and the partition's end (high watermark).
// It never waits for new messages.
func (i *Inspector) Read(ctx context.Context, topic string, partition int, offset int64, max int, maxBytes int) ([]kafka.Message, int64, error) {
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	var out []kafka.Message
	end := int64(-1)
	for len(out) < max {
		resp, err := i.c.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset,
			MinBytes: 1, MaxBytes: int64(maxBytes), MaxWait: 10 * time.Millisecond})
		if err != nil {
			return out, end, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, offset, err)
		}
		if resp.Error != nil {
			return out, end, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, offset, resp.Error)
		}
		end = resp.HighWatermark
		got := 0
		for len(out) < max {
			rec, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return out, end, fmt.Errorf("decode %s/%d@%d: %w", topic, partition, offset, err)
			}
			if rec.Offset < offset { // a batch may begin before the offset asked for
				release(rec)
				continue
			}
			m, err := toMessage(topic, partition, rec)
			release(rec)
			if err != nil {
				return out, end, fmt.Errorf("decode %s/%d@%d: %w", topic, partition, rec.Offset, err)
			}
			out = append(out, m)
			offset = rec.Offset + 1
			got++
		}
		if got == 0 || offset >= end {
			break
		}
	}
	return out, end, nil
}

// release hands the pages under rec's key and value back to kafka-go's pool. Unreleased, every fetch took
// a new 64 KiB page: the console's sampler, which fetches each partition's few new records one batch at a
// time, allocated half of the process's bytes under load.
func release(rec *kafka.Record) {
	if rec.Key != nil {
		_ = rec.Key.Close()
	}
	if rec.Value != nil {
		_ = rec.Value.Close()
	}
}

// toMessage copies rec into a message.
func toMessage(topic string, partition int, rec *kafka.Record) (kafka.Message, error) {
	m := kafka.Message{Topic: topic, Partition: partition, Offset: rec.Offset, Time: rec.Time, Headers: rec.Headers}
	var err error
	if rec.Key != nil {
		if m.Key, err = io.ReadAll(rec.Key); err != nil {
			return m, err
		}
	}
	if rec.Value != nil {
		if m.Value, err = io.ReadAll(rec.Value); err != nil {
			return m, err
		}
	}
	return m, nil
}

// PartitionOf is the partition kafka-go's murmur2 balancer (the one choreo's writers use, compatible with
// the Java client's default partitioner) puts key in, among partitions partitions.
func PartitionOf(key []byte, partitions int) int {
	ids := make([]int, partitions)
	for p := range ids {
		ids[p] = p
	}
	return kafka.Murmur2Balancer{}.Balance(kafka.Message{Key: key}, ids...)
}

// GroupMember is one member of a consumer group and the partitions assigned to it.
type GroupMember struct {
	ID       string           `json:"id"`
	ClientID string           `json:"client_id"`
	Host     string           `json:"host"`
	Assigned map[string][]int `json:"assigned"` // topic -> partitions
}

// GroupPartition is where a group stands on one partition.
type GroupPartition struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Committed int64  `json:"committed"` // -1: nothing committed yet
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"` // End - Committed; the whole partition when nothing is committed
}

// GroupInfo is a consumer group's state, members and offsets.
type GroupInfo struct {
	ID      string           `json:"id"`
	State   string           `json:"state"`
	Members []GroupMember    `json:"members"`
	Offsets []GroupPartition `json:"offsets"`
}

// TotalLag is the group's lag summed over every partition it has offsets on.
func (g GroupInfo) TotalLag() int64 {
	var n int64
	for _, o := range g.Offsets {
		n += o.Lag
	}
	return n
}

// Groups describes every consumer group whose id keep accepts (nil: all): its state and members, and its
// committed offsets against the partitions' ends, taken from topics (as Topics returned them; offsets on
// other topics are left out). Sorted by id.
func (i *Inspector) Groups(ctx context.Context, keep func(string) bool, topics []TopicInfo) ([]GroupInfo, error) {
	list, err := i.c.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	if list.Error != nil {
		return nil, fmt.Errorf("list consumer groups: %w", list.Error)
	}
	var ids []string
	for _, g := range list.Groups {
		if keep == nil || keep(g.GroupID) {
			ids = append(ids, g.GroupID)
		}
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	desc, err := i.c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: ids})
	if err != nil {
		return nil, fmt.Errorf("describe consumer groups: %w", err)
	}
	byID := map[string]kafka.DescribeGroupsResponseGroup{}
	for _, g := range desc.Groups {
		byID[g.GroupID] = g
	}
	ends := map[string]map[int]int64{}
	for _, t := range topics {
		ends[t.Name] = map[int]int64{}
		for _, p := range t.Partitions {
			ends[t.Name][p.ID] = p.End
		}
	}
	out := make([]GroupInfo, 0, len(ids))
	for _, id := range ids {
		d := byID[id]
		g := GroupInfo{ID: id, State: d.GroupState}
		for _, m := range d.Members {
			gm := GroupMember{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assigned: map[string][]int{}}
			for _, t := range m.MemberAssignments.Topics {
				gm.Assigned[t.Topic] = append(gm.Assigned[t.Topic], t.Partitions...)
			}
			g.Members = append(g.Members, gm)
		}
		offs, err := i.groupOffsets(ctx, id, ends)
		if err != nil {
			return nil, err
		}
		g.Offsets = offs
		out = append(out, g)
	}
	return out, nil
}

// groupOffsets reads group's committed offsets on every topic of ends that it has committed on.
func (i *Inspector) groupOffsets(ctx context.Context, group string, ends map[string]map[int]int64) ([]GroupPartition, error) {
	resp, err := i.c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group})
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, resp.Error)
	}
	var out []GroupPartition
	for topic, parts := range resp.Topics {
		te, ok := ends[topic]
		if !ok {
			continue
		}
		committed := map[int]int64{}
		for _, p := range parts {
			committed[p.Partition] = p.CommittedOffset
		}
		// Every partition of a topic the group reads, including those it has not committed on yet.
		for partition, end := range te {
			c, ok := committed[partition]
			if !ok {
				c = -1
			}
			out = append(out, GroupPartition{Topic: topic, Partition: partition, Committed: c, End: end, Lag: end - max(c, 0)})
		}
	}
	slices.SortFunc(out, func(a, b GroupPartition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return a.Partition - b.Partition
	})
	return out, nil
}

// ErrUnsupported means the cluster does not answer the request (an older or a partial implementation).
var ErrUnsupported = errors.New("not supported by this cluster")

// LogDirSizes returns the bytes each partition of topics (as Topics returned them) takes on disk, summed over every broker's log
// directories (so replicas count as often as they are stored), from DescribeLogDirs. kafka-go has no
// client for that request, so it goes through franz-go's, which joins no group either.
func (i *Inspector) LogDirSizes(ctx context.Context, topics []TopicInfo) (map[string]map[int]int64, error) {
	if i.c.secured { // the franz-go client is not given choreo's TLS and SASL
		return nil, fmt.Errorf("describe log dirs over TLS or SASL: %w", ErrUnsupported)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(i.brokers...), kgo.ClientID("choreo-console"), kgo.DialTimeout(2*time.Second))
	if err != nil {
		return nil, fmt.Errorf("kafka client for log dirs: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeLogDirsRequest()
	for _, t := range topics {
		rt := kmsg.NewDescribeLogDirsRequestTopic()
		rt.Topic = t.Name
		for _, p := range t.Partitions {
			rt.Partitions = append(rt.Partitions, int32(p.ID))
		}
		req.Topics = append(req.Topics, rt)
	}
	out := map[string]map[int]int64{}
	for _, shard := range cl.RequestSharded(ctx, req) {
		if shard.Err != nil {
			return nil, fmt.Errorf("describe log dirs: %w (%w)", ErrUnsupported, shard.Err)
		}
		resp := shard.Resp.(*kmsg.DescribeLogDirsResponse)
		if resp.ErrorCode != 0 {
			return nil, fmt.Errorf("describe log dirs: %w (error code %d)", ErrUnsupported, resp.ErrorCode)
		}
		for _, d := range resp.Dirs {
			for _, t := range d.Topics {
				if out[t.Topic] == nil {
					out[t.Topic] = map[int]int64{}
				}
				for _, p := range t.Partitions {
					if !p.IsFuture {
						out[t.Topic][int(p.Partition)] += p.Size
					}
				}
			}
		}
	}
	return out, nil
}

// GroupLag returns where group stands on every partition of topics (as Topics returned them), with one
// OffsetFetch: Committed is -1 where the group has committed nothing, and Lag then counts every message
// the partition still holds.
func (i *Inspector) GroupLag(ctx context.Context, group string, topics []TopicInfo) ([]GroupPartition, error) {
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, t := range topics {
		for _, p := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], p.ID)
		}
	}
	if len(req.Topics) == 0 {
		return nil, nil
	}
	resp, err := i.c.OffsetFetch(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	// A group that never committed is unknown to some brokers (GroupIdNotFound), to others it has -1s.
	if resp.Error != nil && !errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return nil, fmt.Errorf("offsets of group %s: %w", group, resp.Error)
	}
	committed := map[string]map[int]int64{}
	for topic, parts := range resp.Topics {
		committed[topic] = map[int]int64{}
		for _, p := range parts {
			if p.Error != nil {
				if errors.Is(p.Error, kafka.GroupIdNotFound) {
					continue
				}
				return nil, fmt.Errorf("offset of group %s on %s/%d: %w", group, topic, p.Partition, p.Error)
			}
			committed[topic][p.Partition] = p.CommittedOffset
		}
	}
	var out []GroupPartition
	for _, t := range topics {
		for _, p := range t.Partitions {
			c, ok := committed[t.Name][p.ID]
			if !ok || c < 0 {
				c = -1
			}
			out = append(out, GroupPartition{Topic: t.Name, Partition: p.ID, Committed: c, End: p.End, Lag: max(p.End-max(c, p.Start), 0)})
		}
	}
	return out, nil
}
