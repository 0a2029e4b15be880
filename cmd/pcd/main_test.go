package main

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// pflag takes a `quoted` word of a flag's usage as the name of its value,
// which garbles --help ("--token connect edges add"): no usage may quote.
// And each usage names the flag's environment variable.
func TestFlagUsages(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) {
				if strings.Contains(f.Usage, "`") {
					t.Errorf("%s --%s: usage %q has a backquote", c.CommandPath(), f.Name, f.Usage)
				}
				// Every flag is also PC_<FLAG>, and --help says so.
				if f.Name != "help" && f.Name != "version" && !strings.Contains(f.Usage, "($PC_") {
					t.Errorf("%s --%s: usage %q does not name its environment variable", c.CommandPath(), f.Name, f.Usage)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(rootCmd(io.Discard, io.Discard))
}
