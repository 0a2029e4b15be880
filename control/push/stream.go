package push

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/privateconnect/pc/internal/config"
)

// Stream writes the config stream of one edge to w until ctx is done or a
// write fails: first a snapshot or the changes since (epoch, version), then
// every later change as it is published, and a ping every PingInterval. Each
// message is one JSON line, flushed at once. The edge counts as connected
// (see [Presence]) while its stream is open. instance names the edge
// process (see config.MsgReplaced) and from is where it connected from.
func (h *Hub) Stream(ctx context.Context, w *bufio.Writer, edgeID, instance, from, epoch string, version int64) error {
	me := h.subscribe(edgeID, instance, from)
	defer h.unsubscribe(me)
	h.Presence.StreamOpened(edgeID, instance)
	defer h.Presence.StreamClosed(edgeID)

	if h.deleted(me) {
		return ErrEdgeDeleted
	}
	cur, err := h.sendSince(ctx, w, edgeID, epoch, version, true)
	if err != nil {
		return err
	}
	// A cached snapshot may be behind the current version: catch up now
	// rather than at the next change.
	me.poke()
	ping := time.NewTicker(h.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-me.wake:
			if h.deleted(me) {
				return ErrEdgeDeleted
			}
			if by := h.replaced(me); by != "" {
				_ = writeMsg(w, config.Message{Type: config.MsgReplaced, Epoch: h.epoch, Version: cur, ReplacedBy: by})
				return ErrEdgeReplaced
			}
			if cur, err = h.sendSince(ctx, w, "", h.epoch, cur, false); err != nil {
				return err
			}
			if ids := h.takeInbox(me); len(ids) > 0 {
				if err := writeMsg(w, config.Message{Type: config.MsgInbox, Epoch: h.epoch, Version: cur, Inbox: ids}); err != nil {
					return err
				}
			}
		case <-ping.C:
			if err := writeMsg(w, config.Message{Type: config.MsgPing, Epoch: h.epoch, Version: cur}); err != nil {
				return err
			}
			h.Presence.Touch(edgeID)
		}
	}
}

// sendSince sends what the edge at (epoch, v) misses and returns the version
// it then has. first marks the stream's first message, which carries the
// edge's id and is sent even when there is nothing new.
func (h *Hub) sendSince(ctx context.Context, w *bufio.Writer, edgeID, epoch string, v int64, first bool) (int64, error) {
	changes, cur, ok := h.since(epoch, v)
	if !ok {
		line, ver, err := h.snapshotMessage(ctx)
		if err != nil {
			return v, err
		}
		if first {
			// The cached line has no edge id: splice it in after the type.
			id, _ := json.Marshal(edgeID)
			rest, ok := bytes.CutPrefix(line, []byte(snapshotPrefix))
			if !ok {
				return v, fmt.Errorf("push: unexpected snapshot encoding")
			}
			line = slices.Concat([]byte(snapshotPrefix+`"edgeId":`), id, []byte(","), rest)
		}
		if _, err := w.Write(line); err != nil {
			return v, fmt.Errorf("push: write snapshot: %w", err)
		}
		return ver, flush(w)
	}
	if len(changes) == 0 && !first {
		return cur, nil
	}
	if len(changes) > 0 {
		cur = changes[len(changes)-1].Version
	}
	m := config.Message{Type: config.MsgChanges, Epoch: h.epoch, Version: cur, Changes: changes}
	if first {
		m.EdgeID = edgeID
	}
	return cur, writeMsg(w, m)
}

// ErrEdgeDeleted ends the stream of an edge deleted while it was open.
var ErrEdgeDeleted = errors.New("push: the edge was deleted")

// ErrEdgeReplaced ends the stream of an edge process when another process
// of the same edge opened one (config.MsgReplaced).
var ErrEdgeReplaced = errors.New("push: another process of this edge connected")

const snapshotPrefix = `{"type":"snapshot",`

func writeMsg(w *bufio.Writer, m config.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("push: encode: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("push: write: %w", err)
	}
	return flush(w)
}

func flush(w *bufio.Writer) error {
	if err := w.Flush(); err != nil {
		return fmt.Errorf("push: flush: %w", err)
	}
	return nil
}
