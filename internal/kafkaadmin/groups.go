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
func DeleteGroup(ctx context.Context, brokers []string, group string) error {
	c, err := newClient(brokers)
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
