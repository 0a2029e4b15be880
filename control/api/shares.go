package api

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/privateconnect/pc/control/push"
	"github.com/privateconnect/pc/control/store"
	"github.com/privateconnect/pc/control/webhooks"
	"github.com/privateconnect/pc/internal/sharepass"
)

var (
	shareMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	expiresIns   = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour, "never": 0}
)

type pluginRefRequest struct {
	PluginID string          `json:"pluginId" api:"required"`
	Config   json.RawMessage `json:"config"`
}

// shareRequest is the body of PATCH /v1/shares/:id (every field optional)
// and, as createShareRequest, of share creation.
type shareRequest struct {
	Name *string `json:"name"`
	shareFields
}

// createShareRequest is the body of share creation: a shareRequest whose
// name is required (apply with create refuses it absent).
type createShareRequest struct {
	Name *string `json:"name" api:"required"`
	shareFields
}

// shareFields are a share's fields besides its name.
type shareFields struct {
	Description     *string             `json:"description"`
	ExpiresIn       *string             `json:"expiresIn"`
	ExpiresAt       opt[time.Time]      `json:"expiresAt"`
	AllowedPaths    *[]string           `json:"allowedPaths"`
	AllowedMethods  *[]string           `json:"allowedMethods"`
	RateLimitPerMin opt[int]            `json:"rateLimitPerMin"`
	Password        opt[string]         `json:"password"`
	AllowedIPs      *[]string           `json:"allowedIps"`
	MaxUses         opt[int64]          `json:"maxUses"`
	Plugins         *[]pluginRefRequest `json:"plugins"`
}

// apply validates the request and applies it to sh. create requires a name
// and defaults the expiry to 24 h.
func (req *shareRequest) apply(sh *store.Share, now time.Time, create bool) error {
	var v validator
	if req.Name != nil {
		if v.displayName(*req.Name, "name", 1, 100) {
			sh.Name = *req.Name
		}
	} else if create {
		v.add("name", "is required (1-100 characters)")
	}
	if req.Description != nil && v.strLen(*req.Description, "description", 0, 500) {
		sh.Description = *req.Description
	}
	switch {
	case req.ExpiresIn != nil && req.ExpiresAt.Set:
		v.add("expiresAt", "cannot be combined with expiresIn")
	case req.ExpiresIn != nil:
		d, ok := expiresIns[*req.ExpiresIn]
		if !ok {
			v.add("expiresIn", "must be one of 1h, 24h, 7d, 30d, never")
		} else if d == 0 {
			sh.ExpiresAt = nil
		} else {
			t := now.Add(d)
			sh.ExpiresAt = &t
		}
	case req.ExpiresAt.Set && req.ExpiresAt.Null:
		sh.ExpiresAt = nil
	case req.ExpiresAt.Set:
		t := apiTime(req.ExpiresAt.V)
		if v.check(t.After(now), "expiresAt", "must be in the future") {
			sh.ExpiresAt = &t
		}
	case create:
		t := now.Add(24 * time.Hour)
		sh.ExpiresAt = &t
	}
	if req.AllowedPaths != nil {
		paths := *req.AllowedPaths
		v.check(len(paths) <= 100, "allowedPaths", "must have at most 100 entries")
		for i, p := range paths {
			v.check(strings.HasPrefix(p, "/") && len(p) <= 500 && !strings.ContainsAny(p, " \t\r\n?#"),
				fmt.Sprintf("allowedPaths[%d]", i), "must be a path starting with / (prefix, or glob with * and **), at most 500 characters")
		}
		sh.AllowedPaths = slices.Clone(paths)
	}
	if req.AllowedMethods != nil {
		ms := make([]string, 0, len(*req.AllowedMethods))
		for i, m := range *req.AllowedMethods {
			m = strings.ToUpper(m)
			if v.check(slices.Contains(shareMethods, m), fmt.Sprintf("allowedMethods[%d]", i), "must be one of %s", strings.Join(shareMethods, ", ")) && !slices.Contains(ms, m) {
				ms = append(ms, m)
			}
		}
		sh.AllowedMethods = ms
	}
	if req.RateLimitPerMin.Set {
		if req.RateLimitPerMin.Null {
			sh.RateLimitPerMin = 0
		} else if v.intRange(req.RateLimitPerMin.V, "rateLimitPerMin", 1, 100000) {
			sh.RateLimitPerMin = req.RateLimitPerMin.V
		}
	}
	if req.Password.Set {
		if req.Password.Null {
			sh.PasswordHash = ""
		} else if v.strLen(req.Password.V, "password", 8, 128) {
			h, err := sharepass.Hash(req.Password.V)
			if err != nil {
				return err
			}
			sh.PasswordHash = h
		}
	}
	if req.AllowedIPs != nil {
		v.check(len(*req.AllowedIPs) <= 1000, "allowedIps", "must have at most 1000 entries")
		sh.AllowedIPs = v.cidrs(*req.AllowedIPs, "allowedIps")
	}
	if req.MaxUses.Set {
		if req.MaxUses.Null {
			sh.MaxUses = 0
		} else if v.check(req.MaxUses.V >= 1, "maxUses", "must be at least 1") {
			sh.MaxUses = req.MaxUses.V
		}
	}
	if req.Plugins != nil {
		v.check(len(*req.Plugins) <= 20, "plugins", "must have at most 20 entries")
		refs := make([]store.PluginRef, 0, len(*req.Plugins))
		for i, p := range *req.Plugins {
			f := fmt.Sprintf("plugins[%d]", i)
			v.strLen(p.PluginID, f+".pluginId", 1, 100)
			cfg := json.RawMessage(strings.TrimSpace(string(p.Config)))
			if len(cfg) > 0 && string(cfg) != "null" {
				v.check(cfg[0] == '{', f+".config", "must be an object")
			} else {
				cfg = nil
			}
			refs = append(refs, store.PluginRef{PluginID: p.PluginID, Config: cfg})
		}
		sh.Plugins = refs
	}
	return v.err()
}

// shareTokenEncoding is lowercase base32 without padding: every character
// is in the base64url alphabet (URL-safe), and the token is also a valid,
// case-insensitive DNS label, so `<token>.<share domain>` works.
var shareTokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newShareToken returns 160 random bits as 32 lowercase base32 characters.
func newShareToken() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return shareTokenEncoding.EncodeToString(b)
}

func (a *API) createShare(c *call) (any, error) {
	return a.createShareFor(c, c.param("id"))
}

func (a *API) createShareFor(c *call, serviceID string) (any, error) {
	var creq createShareRequest
	if err := c.decode(&creq); err != nil {
		return nil, err
	}
	req := shareRequest(creq)
	token := newShareToken()
	sh := store.Share{ID: uuid.NewString(), WorkspaceID: c.ws, ServiceID: serviceID, TokenHash: HashSecret(token),
		TokenPreview: token[:6], CreatedAt: c.now, CreatedBy: c.key.ID,
		AllowedPaths: []string{}, AllowedMethods: []string{}, AllowedIPs: []string{}, Plugins: []store.PluginRef{}}
	if err := req.apply(&sh, c.now, true); err != nil {
		return nil, err
	}
	if req.Plugins != nil {
		if err := a.checkPluginAttachments(c, *req.Plugins); err != nil {
			return nil, err
		}
	}
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetService(tx, c.ws, serviceID); err != nil {
			return err
		}
		if err := checkShareLimit(tx, c.ws, c.now); err != nil {
			return err
		}
		if err := usePlugins(tx, c.ws, sh.Plugins); err != nil {
			return err
		}
		if err := store.CreateShare(tx, &sh); err != nil {
			return err
		}
		return a.emit(tx, c.ws, webhooks.ShareCreated, map[string]any{"shareId": sh.ID, "serviceId": serviceID, "name": sh.Name, "expiresAt": sh.ExpiresAt})
	})
	if err != nil {
		return nil, err
	}
	c.resource = sh.ID
	a.publish(c, push.Share(c.ws, sh.ID))
	return shareCreatedView{ID: sh.ID, ServiceID: serviceID, Token: token, Name: sh.Name, Description: sh.Description,
		ShareURL: a.edgeBaseURL() + "/shared/" + token, ExpiresAt: apiTimePtr(sh.ExpiresAt), CreatedAt: sh.CreatedAt, sharePolicy: policyView(&sh)}, nil
}

func (a *API) listServiceShares(c *call) (any, error) {
	after, limit, err := c.page()
	if err != nil {
		return nil, err
	}
	var shares []store.Share
	var next string
	err = a.kv.View(c.ctx, func(tx store.Tx) error {
		if _, err := store.GetService(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		var err error
		shares, next, err = store.ListServiceShares(tx, c.ws, c.param("id"), after, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.setNext(next)
	out := make([]shareView, 0, len(shares))
	for i := range shares {
		out = append(out, shareViewOf(&shares[i], c.now))
	}
	return out, nil
}

func (a *API) getShare(c *call) (any, error) {
	var sh *store.Share
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		var err error
		sh, err = store.GetShare(tx, c.ws, c.param("id"))
		return err
	})
	if err != nil {
		return nil, err
	}
	return shareViewOf(sh, c.now), nil
}

func (a *API) patchShare(c *call) (any, error) {
	var req shareRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.Plugins != nil {
		if err := a.checkPluginAttachments(c, *req.Plugins); err != nil {
			return nil, err
		}
	}
	var sh *store.Share
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		if sh, err = store.GetShare(tx, c.ws, c.param("id")); err != nil {
			return err
		}
		if err := req.apply(sh, c.now, false); err != nil {
			return err
		}
		if req.Plugins != nil {
			if err := usePlugins(tx, c.ws, sh.Plugins); err != nil {
				return err
			}
		}
		return store.PutShare(tx, sh)
	})
	if err != nil {
		return nil, err
	}
	c.resource = sh.ID
	a.publish(c, push.Share(c.ws, sh.ID))
	return shareViewOf(sh, c.now), nil
}

func (a *API) deleteShare(c *call) (any, error) {
	var sh *store.Share
	err := a.kv.Update(c.ctx, func(tx store.Tx) error {
		var err error
		var now bool
		// Revoked before: no new event (two requests in one clock tick
		// cannot tell that from the revocation time).
		if sh, now, err = store.RevokeShare(tx, c.ws, c.param("id"), c.now); err != nil || !now {
			return err
		}
		return a.emit(tx, c.ws, webhooks.ShareRevoked, shareRevokedData(sh))
	})
	if err != nil {
		return nil, err
	}
	c.resource = sh.ID
	a.publish(c, push.Share(c.ws, sh.ID))
	return shareViewOf(sh, c.now), nil
}

type sharedInfoView struct {
	Name             string     `json:"name"`
	Description      string     `json:"description"`
	ExpiresAt        *time.Time `json:"expiresAt"`
	ServiceName      string     `json:"serviceName"`
	Protocol         string     `json:"protocol"`
	RequiresPassword bool       `json:"requiresPassword"`
}

// sharedInfo describes a share link to its visitors; revoked, expired or
// unknown tokens are all 404.
func (a *API) sharedInfo(c *call) (any, error) {
	token := c.param("token")
	if len(token) < 16 || len(token) > 128 {
		return nil, notFound("share")
	}
	var out sharedInfoView
	err := a.kv.View(c.ctx, func(tx store.Tx) error {
		sh, err := store.GetShareByTokenHash(tx, HashSecret(token))
		if err != nil {
			return err
		}
		if !sh.Active(c.now) {
			return notFound("share")
		}
		s, err := store.GetService(tx, sh.WorkspaceID, sh.ServiceID)
		if err != nil {
			return err
		}
		out = sharedInfoView{Name: sh.Name, Description: sh.Description, ExpiresAt: apiTimePtr(sh.ExpiresAt),
			ServiceName: s.Name, Protocol: s.Protocol, RequiresPassword: sh.PasswordHash != ""}
		return nil
	})
	if isNotFoundErr(err) {
		return nil, notFound("share")
	}
	return out, err
}
