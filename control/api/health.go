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

// health answers 200 when the store answers a ping within 2 s. Otherwise it
// answers 503 in the error envelope, with the health payload (status
// "degraded", database "error") under "data" for monitors.
func (a *API) health(ctx *fasthttp.RequestCtx) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v := healthView{Status: "ok", Version: a.opts.Version, UptimeSeconds: int64(time.Since(a.started).Seconds()),
		Database: "ok", Timestamp: time.Now().UTC().Truncate(time.Second)}
	if err := a.kv.Ping(pctx); err != nil {
		a.log.Warn("health: store ping failed", "err", err)
		v.Status, v.Database = "degraded", "error"
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, degradedBody{
			errorBody: errorBody{Error: reason(503), Message: "storage is not answering", StatusCode: 503}, Data: v})
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, envelope{Success: true, Data: v})
}
