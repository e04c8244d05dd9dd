package kafkaadmin

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// ErrGroupActive means a consumer group still has members, so it cannot be deleted.
var ErrGroupActive = errors.New("consumer group still has members")

// DeleteGroup deletes a consumer group and its committed offsets, so the next consumer with that id starts
// from the earliest offset. A group that does not exist is already deleted; a group with live members
// yields ErrGroupActive (stop its consumers first).
func (a Admin) DeleteGroup(ctx context.Context, group string) error {
	c, err := a.newClient()
	if err != nil {
		return err
	}
	defer c.close()
	resp, err := c.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return fmt.Errorf("delete consumer group %s: %w", group, err)
	}
	switch err := resp.Errors[group]; {
	case err == nil, errors.Is(err, kafka.GroupIdNotFound):
		return nil
	case errors.Is(err, kafka.NonEmptyGroup):
		return fmt.Errorf("delete consumer group %s: %w", group, ErrGroupActive)
	default:
		return fmt.Errorf("delete consumer group %s: %w", group, err)
	}
}

// PartitionOffsets is where a consumer group stands on one partition.
type PartitionOffsets struct {
	Partition int
	Committed int64 // the next offset the group will read; 0 when it has committed nothing
	End       int64 // the offset the next message will get
}

// Lag is how many messages of the partition the group has not committed yet.
func (p PartitionOffsets) Lag() int64 { return p.End - p.Committed }

// EndOffsets returns the offset the next message of each partition of topic will get.
func (a Admin) EndOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	c, err := a.newClient()
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.endOffsets(ctx, topic)
}

func (c *client) endOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, fmt.Errorf("describe %s: %v", topic, meta.Topics)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	resp, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	ends := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("end offset of %s/%d: %w", topic, p.Partition, p.Error)
		}
		ends[p.Partition] = p.LastOffset
	}
	return ends, nil
}

// GroupOffsets returns group's committed offsets against the end of every partition of topic.
func (a Admin) GroupOffsets(ctx context.Context, group, topic string) ([]PartitionOffsets, error) {
	c, err := a.newClient()
	if err != nil {
		return nil, err
	}
	defer c.close()
	ends, err := c.endOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	committed, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("offsets of group %s on %s: %w", group, topic, err)
	}
	done := map[int]int64{}
	for _, p := range committed.Topics[topic] {
		done[p.Partition] = max(p.CommittedOffset, 0)
	}
	out := make([]PartitionOffsets, 0, len(ends))
	for p, end := range ends {
		out = append(out, PartitionOffsets{Partition: p, Committed: done[p], End: end})
	}
	return out, nil
}
