package main

import (
	"github.com/spf13/cobra"
)

// statusView is the human form of `connect status`.
type statusView struct {
	Control       string `json:"control"`
	Health        string `json:"health"`
	Version       string `json:"version"`
	Agents        int    `json:"agents"`
	OnlineAgents  int    `json:"onlineAgents"`
	Services      int    `json:"services"`
	ActiveShares  int    `json:"activeShares"`
	Edges         int    `json:"edges"`
	OnlineEdges   int    `json:"onlineEdges"`
	ConfigVersion int64  `json:"configVersion"`
}

func (a *app) statusCmd() *cobra.Command {
	return leaf("status", "Show the control plane's health and the workspace counts",
		`  connect status
  connect status --json | jq .onlineAgents`,
		0, 0, func(cmd *cobra.Command, _ []string) error {
			ctx := a.ctx(cmd)
			c, err := a.client()
			if err != nil {
				return err
			}
			v := statusView{Control: a.control}
			if h, _ := c.Health(ctx); h != nil {
				v.Health, v.Version = h.Status, h.Version
			}
			st, err := c.Status(ctx) // last call: --json prints its data
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(st)
			}
			v.Agents, v.OnlineAgents, v.Services, v.ActiveShares = st.Agents, st.OnlineAgents, st.Services, st.ActiveShares
			v.Edges, v.OnlineEdges, v.ConfigVersion = st.Edges, st.OnlineEdges, st.ConfigVersion
			return printDetail(a.stdout, v)
		})
}
