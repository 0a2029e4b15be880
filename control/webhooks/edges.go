package webhooks

import (
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/store"
)

// Edge presence is in memory (package push); the last state reported for
// each edge is kept in the store (meta/edgestate/<id>: "online" or
// "offline"), so that edge.connected and edge.disconnected are sent once per
// transition, also across restarts of the control plane.

const edgeStatePrefix = "edgestate/"

func (d *Dispatcher) edgeLoop() {
	defer d.wg.Done()
	if d.opts.OnlineEdges == nil {
		return
	}
	t := time.NewTicker(d.opts.EdgeCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			if err := d.CheckEdges(time.Now()); err != nil && d.ctx.Err() == nil {
				d.log.Warn("webhooks: edge events", "err", err)
			}
		}
	}
}

type edgeChange struct {
	id, name, state string // state "" drops the record (edge deleted)
}

// CheckEdges compares edge presence with the stored states and enqueues an
// event for each transition. An edge is reported offline only once the
// control plane has run for EdgeOfflineGrace (after a restart, edges need a
// moment to show up again).
func (d *Dispatcher) CheckEdges(now time.Time) error {
	if d.opts.OnlineEdges == nil {
		return nil
	}
	online := map[string]bool{}
	for _, id := range d.opts.OnlineEdges() {
		online[id] = true
	}
	settled := now.Sub(d.started) >= d.opts.EdgeOfflineGrace
	plan := func(tx store.Tx) ([]edgeChange, error) {
		edges, _, err := store.ListEdges(tx, "", 0)
		if err != nil {
			return nil, err
		}
		states := map[string]string{}
		pfx := []byte("meta/" + edgeStatePrefix)
		if err := tx.Scan(pfx, nil, func(k, v []byte) (bool, error) {
			states[string(k[len(pfx):])] = string(v)
			return true, nil
		}); err != nil {
			return nil, err
		}
		var out []edgeChange
		for _, e := range edges {
			st := states[e.ID]
			delete(states, e.ID)
			switch {
			case online[e.ID] && st != "online":
				out = append(out, edgeChange{e.ID, e.Name, "online"})
			case !online[e.ID] && st == "online" && settled:
				out = append(out, edgeChange{e.ID, e.Name, "offline"})
			}
		}
		for id := range states { // deleted edges
			out = append(out, edgeChange{id: id})
		}
		return out, nil
	}
	var changes []edgeChange
	if err := d.kv.View(d.ctx, func(tx store.Tx) error {
		var err error
		changes, err = plan(tx)
		return err
	}); err != nil || len(changes) == 0 {
		return err
	}
	return d.kv.Update(d.ctx, func(tx store.Tx) error {
		changes, err := plan(tx) // again, in the writing transaction
		if err != nil {
			return err
		}
		for _, c := range changes {
			k := []byte("meta/" + edgeStatePrefix + c.id)
			if c.state == "" {
				if err := tx.Delete(k); err != nil {
					return err
				}
				continue
			}
			if err := store.PutMeta(tx, edgeStatePrefix+c.id, []byte(c.state)); err != nil {
				return err
			}
			ev, audit := EdgeConnected, "CONNECTED"
			if c.state == "offline" {
				ev, audit = EdgeDisconnected, "DISCONNECTED"
			}
			if err := d.EnqueueAll(tx, ev, map[string]any{"edgeId": c.id, "name": c.name}); err != nil {
				return err
			}
			if ws := d.opts.EdgeAuditWorkspace; ws != "" {
				if err := store.AppendAudit(tx, &store.AuditEvent{ID: uuid.NewString(), WorkspaceID: ws, Type: "edge." + audit,
					Event: audit, EdgeID: c.id, Details: c.name, CreatedAt: now.UTC().Truncate(time.Millisecond)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
