package client

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// AuditEntry is one entry of the workspace audit trail: an API mutation or an
// agent or edge connection event. Fields that do not apply are empty.
type AuditEntry struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Event      string          `json:"event,omitempty"`
	KeyID      string          `json:"keyId,omitempty"`
	Method     string          `json:"method,omitempty"`
	Route      string          `json:"route,omitempty"`
	ResourceID string          `json:"resourceId,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	AgentID    string          `json:"agentId,omitempty"`
	EdgeID     string          `json:"edgeId,omitempty"`
	IPAddress  string          `json:"ipAddress,omitempty"`
	Details    json.RawMessage `json:"details,omitempty"`
	CreatedAt  time.Time       `json:"createdAt"`
}

// AuditFilter narrows ListAudit.
type AuditFilter struct {
	Type  string
	Since time.Time
}

// ListAudit calls GET /v1/audit (read).
func (c *Client) ListAudit(ctx context.Context, lo ListOptions, f AuditFilter) ([]AuditEntry, string, error) {
	q := url.Values{"type": {f.Type}}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	return list[AuditEntry](ctx, c, p("audit"), lo, q)
}
