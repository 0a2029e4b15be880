package docscheck

import (
	"testing"

	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// FlagErrors holds every command line of the docs that runs root's program
// against root's command tree: each word after the program names a
// subcommand until the first positional argument, and each flag must be
// one of the resolved command's own or inherited flags. It returns one
// message per mismatch, "file:line: `command line`: what is wrong".
func FlagErrors(lines []CommandLine, root *cobra.Command) []string {
	prepare(root)
	var errs []string
	seen := map[string]bool{}
	report := func(cl CommandLine, format string, args ...any) {
		msg := fmt.Sprintf("%s: `%s`: %s", cl.Where(), strings.Join(cl.Words, " "), fmt.Sprintf(format, args...))
		if !seen[msg] {
			seen[msg] = true
			errs = append(errs, msg)
		}
	}
	for _, cl := range lines {
		if cl.Words[0] != root.Name() {
			continue
		}
		cmd, err := resolve(root, cl.Words)
		if err != nil {
			report(cl, "%v", err)
			continue
		}
		for _, w := range cl.Words[1:] {
			if w == "--" {
				break
			}
			for _, f := range flagNames(w) {
				if lookup(cmd, f) == nil {
					report(cl, "%q has no flag %s", cmd.CommandPath(), f)
				}
			}
		}
	}
	return errs
}

// prepare adds the help command and the --help and --version flags, which
// cobra adds only when a command runs.
func prepare(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		c.InitDefaultVersionFlag()
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// resolve returns the command a command line runs.
func resolve(root *cobra.Command, words []string) (*cobra.Command, error) {
	c := root
	for i := 1; i < len(words); i++ {
		w := words[i]
		if w == "--" {
			break
		}
		if len(w) > 1 && w[0] == '-' {
			// The value of a flag that takes one, given as the next word, is
			// not a subcommand.
			if !strings.Contains(w, "=") {
				if f := lookup(c, w); f != nil && f.NoOptDefVal == "" {
					i++
				}
			}
			continue
		}
		var sub *cobra.Command
		for _, s := range c.Commands() {
			if s.Name() == w || s.HasAlias(w) {
				sub = s
			}
		}
		if sub != nil {
			c = sub
			continue
		}
		if c.HasSubCommands() {
			return nil, fmt.Errorf("%q has no command %q", c.CommandPath(), w)
		}
		break // the first positional argument: no more subcommands
	}
	return c, nil
}

// lookup finds a flag ("--name" or "-n") among a command's own and
// inherited flags.
func lookup(c *cobra.Command, flag string) *pflag.Flag {
	if name, ok := strings.CutPrefix(flag, "--"); ok {
		return c.Flag(name)
	}
	if len(flag) != 2 {
		return nil
	}
	for _, fs := range []*pflag.FlagSet{c.Flags(), c.InheritedFlags()} {
		if f := fs.ShorthandLookup(flag[1:]); f != nil {
			return f
		}
	}
	return nil
}

// CheckFlags is FlagErrors for a test: it reads the docs under repoRoot
// and reports each mismatch of root's program as an error.
func CheckFlags(t testing.TB, repoRoot string, root *cobra.Command) {
	t.Helper()
	docs, err := Load(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	lines := CommandLines(docs)
	n := 0
	for _, cl := range lines {
		if cl.Words[0] == root.Name() {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no command line of the docs runs %s: the extraction is broken", root.Name())
	}
	for _, e := range FlagErrors(lines, root) {
		t.Error(e)
	}
}
