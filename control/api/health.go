package api

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

type healthView struct {
	Status        string    `json:"status"`
	Version       string    `json:"version"`
	UptimeSeconds int64     `json:"uptimeSeconds"`
	Database      string    `json:"database"`
	Timestamp     time.Time `json:"timestamp"`
}

type degradedBody struct {
	errorBody
	Data healthView `json:"data"`
}

// SetDraining marks the server as stopping: /health answers 503 "draining"
// from now on, so that a load balancer still holding a connection takes it
// out of rotation.
func (a *API) SetDraining() { a.draining.Store(true) }

// health answers 200 when the store answers a ping within 2 s. Otherwise it
// answers 503 in the error envelope, with the health payload (status
// "degraded", database "error") under "data" for monitors; and 503 with
// status "draining" once the server is stopping (SetDraining).
func (a *API) health(ctx *fasthttp.RequestCtx) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v := healthView{Status: "ok", Version: a.opts.Version, UptimeSeconds: int64(time.Since(a.started).Seconds()),
		Database: "ok", Timestamp: time.Now().UTC().Truncate(time.Second)}
	err := a.kv.Ping(pctx)
	if err != nil {
		a.log.Warn("health: store ping failed", "err", err)
		v.Database = "error"
	}
	switch {
	case a.draining.Load():
		v.Status = "draining"
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, degradedBody{
			errorBody: errorBody{Error: reason(503), Message: "the server is shutting down", StatusCode: 503}, Data: v})
	case err != nil:
		v.Status = "degraded"
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, degradedBody{
			errorBody: errorBody{Error: reason(503), Message: "storage is not answering", StatusCode: 503}, Data: v})
	default:
		writeJSON(ctx, fasthttp.StatusOK, envelope{Success: true, Data: v})
	}
}
