package store

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Agents.

func agentKey(ws, id string) []byte { return key("w", ws, "agent", id) }

// PutAgent creates or updates an agent. An id owned by another workspace is
// a conflict.
func PutAgent(tx Tx, a *Agent) error {
	ik := key("idx", "agent", a.ID)
	owner, err := tx.Get(ik)
	switch {
	case err == nil:
		if string(owner) != a.WorkspaceID {
			return conflict("agentId", "agent id %s is taken", a.ID) // not saying by whom
		}
	case isNotFound(err):
		if err := tx.Put(ik, []byte(a.WorkspaceID)); err != nil {
			return err
		}
	default:
		return err
	}
	return putJSON(tx, agentKey(a.WorkspaceID, a.ID), a)
}

// GetAgent returns an agent of the workspace.
func GetAgent(tx Tx, ws, id string) (*Agent, error) {
	var a Agent
	if err := getJSON(tx, agentKey(ws, id), &a); err != nil {
		return nil, notFound("agent", err)
	}
	return &a, nil
}

// LookupAgent returns an agent by id in whatever workspace owns it.
func LookupAgent(tx Tx, id string) (*Agent, error) {
	ws, err := tx.Get(key("idx", "agent", id))
	if err != nil {
		return nil, notFound("agent", err)
	}
	return GetAgent(tx, string(ws), id)
}

// ListAgents pages through the workspace's agents.
func ListAgents(tx Tx, ws, after string, limit int, keep func(*Agent) bool) ([]Agent, string, error) {
	return List(tx, prefix("w", ws, "agent"), after, limit, keep)
}

// DeleteAgent removes an agent, its services, and revokes their shares.
func DeleteAgent(tx Tx, ws, id string, at time.Time) (services, shares int, err error) {
	if _, err := GetAgent(tx, ws, id); err != nil {
		return 0, 0, err
	}
	svcs, _, err := ListServices(tx, ws, "", 0, func(s *Service) bool { return s.AgentID == id })
	if err != nil {
		return 0, 0, err
	}
	for _, s := range svcs {
		n, err := DeleteService(tx, ws, s.ID, at)
		if err != nil {
			return 0, 0, err
		}
		shares += n
	}
	if err := tx.Delete(key("idx", "agent", id)); err != nil {
		return 0, 0, err
	}
	return len(svcs), shares, tx.Delete(agentKey(ws, id))
}

// Services.

func serviceKey(ws, id string) []byte { return key("w", ws, "svc", id) }

// CreateService stores a new service. Its name must be unique in the
// workspace; when TunnelPort is 0 a free port of [portMin, portMax] is
// allocated (ErrExhausted when none is left).
func CreateService(tx Tx, s *Service, portMin, portMax int) error {
	nk := key("w", s.WorkspaceID, "svcname", s.Name)
	if ok, err := exists(tx, nk); err != nil {
		return err
	} else if ok {
		return conflict("name", "a service named %q already exists", s.Name)
	}
	if s.TunnelPort == 0 {
		p, err := freePort(tx, portMin, portMax)
		if err != nil {
			return err
		}
		s.TunnelPort = p
	}
	pk := key("idx", "port", portKey(s.TunnelPort))
	if ok, err := exists(tx, pk); err != nil {
		return err
	} else if ok {
		return conflict("tunnelPort", "tunnel port %d is taken", s.TunnelPort)
	}
	if s.Subdomain != "" {
		if err := claimSubdomain(tx, s); err != nil {
			return err
		}
	}
	if err := tx.Put(nk, []byte(s.ID)); err != nil {
		return err
	}
	if err := tx.Put(pk, pointer(s.WorkspaceID, s.ID)); err != nil {
		return err
	}
	return putJSON(tx, serviceKey(s.WorkspaceID, s.ID), s)
}

// SubdomainHold is how long a released public subdomain stays reserved for
// the workspace that held it: browsers keep the cookies its service set for
// <subdomain>.<domain> and its users its links, which must not reach
// another workspace's service as soon as it is released.
const SubdomainHold = 30 * 24 * time.Hour

func subdomainHeldKey(sub string) []byte { return key("idx", "subdomainheld", sub) }

// SubdomainTaken reports whether a public subdomain is unavailable to
// workspace ws: in use, or released by another workspace less than
// [SubdomainHold] ago.
func SubdomainTaken(tx Tx, ws, sub string) (bool, error) {
	if ok, err := exists(tx, key("idx", "subdomain", sub)); err != nil || ok {
		return ok, err
	}
	return subdomainHeldByOther(tx, ws, sub)
}

func subdomainHeldByOther(tx Tx, ws, sub string) (bool, error) {
	b, err := tx.Get(subdomainHeldKey(sub))
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return string(b) != ws, nil
}

func claimSubdomain(tx Tx, s *Service) error {
	taken, err := SubdomainTaken(tx, s.WorkspaceID, s.Subdomain)
	if err != nil {
		return err
	}
	if taken {
		// The same answer whether it is in use or held: which workspace
		// has it is none of the caller's business.
		return conflict("subdomain", "subdomain %q is taken", s.Subdomain)
	}
	if err := tx.Delete(subdomainHeldKey(s.Subdomain)); err != nil {
		return err
	}
	return tx.Put(key("idx", "subdomain", s.Subdomain), pointer(s.WorkspaceID, s.ID))
}

// releaseSubdomain frees a service's subdomain, held for its workspace for
// SubdomainHold.
func releaseSubdomain(tx Tx, ws, sub string) error {
	if err := tx.Delete(key("idx", "subdomain", sub)); err != nil {
		return err
	}
	return tx.PutTTL(subdomainHeldKey(sub), []byte(ws), SubdomainHold)
}

// portCursor holds the last tunnel port handed out.
var portCursor = key("meta", "tunnelport")

// freePort returns the first port of [min, max] without an index entry
// after the last one handed out, wrapping around: a freed port goes back
// to use only once the rest of the range has been used, so the clients of
// a deleted tunnel (a psql configuration, say) do not reach the next
// service created, maybe another workspace's, with their credentials.
func freePort(tx Tx, min, max int) (int, error) {
	if min <= 0 || max < min {
		return 0, ErrExhausted
	}
	last := 0
	if b, err := tx.Get(portCursor); err == nil {
		last = atoiOr(string(b), 0)
	} else if !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	start := min
	if last >= min && last < max {
		start = last + 1
	}
	p, err := firstFreePort(tx, start, max)
	if err == nil && p == 0 && start > min {
		p, err = firstFreePort(tx, min, start-1)
	}
	if err != nil {
		return 0, err
	}
	if p == 0 {
		return 0, ErrExhausted
	}
	return p, tx.Put(portCursor, []byte(strconv.Itoa(p)))
}

// firstFreePort returns the lowest port of [from, to] without an index
// entry, or 0.
func firstFreePort(tx Tx, from, to int) (int, error) {
	want := from
	pfx := prefix("idx", "port")
	err := tx.Scan(pfx, []byte(string(pfx)+portKey(from-1)), func(k, v []byte) (bool, error) {
		p := atoiOr(string(k[len(pfx):]), -1)
		if p > want || p > to {
			return false, nil
		}
		if p == want {
			want++
		}
		return true, nil
	})
	if err != nil || want > to {
		return 0, err
	}
	return want, nil
}

// UpdateService overwrites a service, moving its name and subdomain indexes
// when they change (a taken one is a conflict).
func UpdateService(tx Tx, s *Service) error {
	old, err := GetService(tx, s.WorkspaceID, s.ID)
	if err != nil {
		return err
	}
	if old.Name != s.Name {
		nk := key("w", s.WorkspaceID, "svcname", s.Name)
		if ok, err := exists(tx, nk); err != nil {
			return err
		} else if ok {
			return conflict("name", "a service named %q already exists", s.Name)
		}
		if err := tx.Delete(key("w", s.WorkspaceID, "svcname", old.Name)); err != nil {
			return err
		}
		if err := tx.Put(nk, []byte(s.ID)); err != nil {
			return err
		}
	}
	if old.Subdomain != s.Subdomain {
		if s.Subdomain != "" {
			if err := claimSubdomain(tx, s); err != nil {
				return err
			}
		}
		if old.Subdomain != "" {
			if err := releaseSubdomain(tx, s.WorkspaceID, old.Subdomain); err != nil {
				return err
			}
		}
	}
	s.TunnelPort = old.TunnelPort
	return putJSON(tx, serviceKey(s.WorkspaceID, s.ID), s)
}

// GetService returns a service of the workspace.
func GetService(tx Tx, ws, id string) (*Service, error) {
	k := serviceKey(ws, id)
	b, err := tx.Get(k)
	if err != nil {
		return nil, notFound("service", err)
	}
	var s Service
	if err := decodeService(k, b, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", k, err)
	}
	return &s, nil
}

// GetServiceByName returns a service of the workspace by name.
func GetServiceByName(tx Tx, ws, name string) (*Service, error) {
	id, err := tx.Get(key("w", ws, "svcname", name))
	if err != nil {
		return nil, notFound("service", err)
	}
	return GetService(tx, ws, string(id))
}

// ListServices pages through the workspace's services.
func ListServices(tx Tx, ws, after string, limit int, keep func(*Service) bool) ([]Service, string, error) {
	return List(tx, prefix("w", ws, "svc"), after, limit, keep)
}

// DeleteService removes a service, frees its name, port and subdomain, and
// revokes its shares. It returns how many shares it revoked.
func DeleteService(tx Tx, ws, id string, at time.Time) (int, error) {
	s, err := GetService(tx, ws, id)
	if err != nil {
		return 0, err
	}
	n := 0
	shares, _, err := ListServiceShares(tx, ws, id, "", 0)
	if err != nil {
		return 0, err
	}
	for i := range shares {
		sh := &shares[i]
		if sh.RevokedAt == nil {
			sh.RevokedAt = &at
			if err := PutShare(tx, sh); err != nil {
				return 0, err
			}
			n++
		}
	}
	dels := [][]byte{
		key("w", ws, "svcname", s.Name),
		key("idx", "port", portKey(s.TunnelPort)),
		serviceKey(ws, id),
	}
	for _, k := range dels {
		if err := tx.Delete(k); err != nil {
			return 0, err
		}
	}
	if s.Subdomain != "" {
		if err := releaseSubdomain(tx, ws, s.Subdomain); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Shares.

func shareKey(ws, id string) []byte { return key("w", ws, "share", id) }

// CreateShare stores a new share; its token hash must be unique.
func CreateShare(tx Tx, sh *Share) error {
	hk := key("idx", "sharetok", sh.TokenHash)
	if ok, err := exists(tx, hk); err != nil {
		return err
	} else if ok {
		return conflict("token", "share token collision")
	}
	if err := tx.Put(hk, pointer(sh.WorkspaceID, sh.ID)); err != nil {
		return err
	}
	if err := tx.Put(key("idx", "share", sh.ID), []byte(sh.WorkspaceID)); err != nil {
		return err
	}
	if err := tx.Put(key("w", sh.WorkspaceID, "svcshare", sh.ServiceID, sh.ID), nil); err != nil {
		return err
	}
	return putJSON(tx, shareKey(sh.WorkspaceID, sh.ID), sh)
}

// GetShare returns a share of the workspace.
func GetShare(tx Tx, ws, id string) (*Share, error) {
	var sh Share
	if err := getJSON(tx, shareKey(ws, id), &sh); err != nil {
		return nil, notFound("share", err)
	}
	return &sh, nil
}

// LookupShare returns a share by id in whatever workspace owns it.
func LookupShare(tx Tx, id string) (*Share, error) {
	ws, err := tx.Get(key("idx", "share", id))
	if err != nil {
		return nil, notFound("share", err)
	}
	return GetShare(tx, string(ws), id)
}

// GetShareByTokenHash returns the share whose token has this SHA-256 hex.
func GetShareByTokenHash(tx Tx, hash string) (*Share, error) {
	p, err := tx.Get(key("idx", "sharetok", hash))
	if err != nil {
		return nil, notFound("share", err)
	}
	ws, id, _ := splitPointer(p)
	return GetShare(tx, ws, id)
}

// PutShare overwrites a share (the token hash must not change).
func PutShare(tx Tx, sh *Share) error { return putJSON(tx, shareKey(sh.WorkspaceID, sh.ID), sh) }

// ListShares pages through all the workspace's shares.
func ListShares(tx Tx, ws, after string, limit int, keep func(*Share) bool) ([]Share, string, error) {
	return List(tx, prefix("w", ws, "share"), after, limit, keep)
}

// ListServiceShares pages through the shares of one service (cursor: share id).
func ListServiceShares(tx Tx, ws, svc, after string, limit int) ([]Share, string, error) {
	pfx := prefix("w", ws, "svcshare", svc)
	var afk []byte
	if after != "" {
		afk = append(pfx[:len(pfx):len(pfx)], after...)
	}
	var ids []string
	next := ""
	err := tx.Scan(pfx, afk, func(k, v []byte) (bool, error) {
		if limit > 0 && len(ids) == limit {
			next = ids[len(ids)-1]
			return false, nil
		}
		ids = append(ids, string(k[len(pfx):]))
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]Share, 0, len(ids))
	for _, id := range ids {
		sh, err := GetShare(tx, ws, id)
		if err != nil {
			return nil, "", err
		}
		out = append(out, *sh)
	}
	return out, next, nil
}

// RevokeShare marks a share revoked (revoking twice keeps the first time).
func RevokeShare(tx Tx, ws, id string, at time.Time) (sh *Share, revoked bool, err error) {
	sh, err = GetShare(tx, ws, id)
	if err != nil {
		return nil, false, err
	}
	if sh.RevokedAt != nil {
		return sh, false, nil // revoked before
	}
	sh.RevokedAt = &at
	if err := PutShare(tx, sh); err != nil {
		return nil, false, err
	}
	return sh, true, nil
}

// Edges (platform-level).

func edgeKey(id string) []byte { return key("edge", id) }

// CreateEdge stores a new edge; its name must be unique.
func CreateEdge(tx Tx, e *Edge) error {
	nk := key("idx", "edgename", e.Name)
	if ok, err := exists(tx, nk); err != nil {
		return err
	} else if ok {
		return conflict("name", "an edge named %q already exists", e.Name)
	}
	if err := tx.Put(nk, []byte(e.ID)); err != nil {
		return err
	}
	if err := tx.Put(key("idx", "edgetok", e.TokenHash), []byte(e.ID)); err != nil {
		return err
	}
	return putJSON(tx, edgeKey(e.ID), e)
}

// GetEdge returns an edge by id.
func GetEdge(tx Tx, id string) (*Edge, error) {
	var e Edge
	if err := getJSON(tx, edgeKey(id), &e); err != nil {
		return nil, notFound("edge", err)
	}
	return &e, nil
}

// GetEdgeByName returns an edge by name.
func GetEdgeByName(tx Tx, name string) (*Edge, error) {
	id, err := tx.Get(key("idx", "edgename", name))
	if err != nil {
		return nil, notFound("edge", err)
	}
	return GetEdge(tx, string(id))
}

// GetEdgeByTokenHash returns the edge whose token has this SHA-256 hex.
func GetEdgeByTokenHash(tx Tx, hash string) (*Edge, error) {
	id, err := tx.Get(key("idx", "edgetok", hash))
	if err != nil {
		return nil, notFound("edge", err)
	}
	return GetEdge(tx, string(id))
}

// UpdateEdge overwrites an edge, moving its token index when the hash changes.
func UpdateEdge(tx Tx, e *Edge) error {
	old, err := GetEdge(tx, e.ID)
	if err != nil {
		return err
	}
	if old.Name != e.Name {
		return conflict("name", "an edge cannot be renamed")
	}
	if old.TokenHash != e.TokenHash {
		if err := tx.Delete(key("idx", "edgetok", old.TokenHash)); err != nil {
			return err
		}
		if err := tx.Put(key("idx", "edgetok", e.TokenHash), []byte(e.ID)); err != nil {
			return err
		}
	}
	return putJSON(tx, edgeKey(e.ID), e)
}

// ListEdges pages through all edges.
func ListEdges(tx Tx, after string, limit int) ([]Edge, string, error) {
	return List[Edge](tx, prefix("edge"), after, limit, nil)
}

// DeleteEdge removes an edge and its indexes.
func DeleteEdge(tx Tx, id string) error {
	e, err := GetEdge(tx, id)
	if err != nil {
		return err
	}
	for _, k := range [][]byte{key("idx", "edgename", e.Name), key("idx", "edgetok", e.TokenHash), edgeKey(id)} {
		if err := tx.Delete(k); err != nil {
			return err
		}
	}
	// The token is remembered as deleted, so that the edge, calling again,
	// is told so (and stops serving) rather than only refused, as any
	// unknown token is (a restore from an older backup, say).
	return tx.Put(key("idx", "edgedeleted", e.TokenHash), []byte(id))
}

// EdgeDeleted reports whether the edge token with this hash belonged to an
// edge that was deleted.
func EdgeDeleted(tx Tx, hash string) (bool, error) {
	_, err := tx.Get(key("idx", "edgedeleted", hash))
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
