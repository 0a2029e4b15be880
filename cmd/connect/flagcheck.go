package main

import (
	"github.com/spf13/cobra"
)

// Zero and the empty string are the "not set" values of most flags. Given
// explicitly (on the command line or in the environment), they are checked
// like any other value rather than silently meaning the server's default,
// or no limit at all: `--max-uses 0` is refused, not an unlimited link.

// intInRange refuses an integer flag outside lo..hi when it was given or is
// not zero.
func intInRange(cmd *cobra.Command, flag string, v, lo, hi int, unit string) error {
	if v == 0 && !cmd.Flags().Changed(flag) {
		return nil
	}
	if v < lo || v > hi {
		if unit != "" {
			unit = " " + unit
		}
		return usageErrorf("--%s must be %d-%d%s, not %d", flag, lo, hi, unit, v)
	}
	return nil
}

// notEmpty refuses a string flag given explicitly as empty.
func notEmpty(cmd *cobra.Command, flag, v string) error {
	if v == "" && cmd.Flags().Changed(flag) {
		return usageErrorf("--%s must not be empty (leave the flag out for the default)", flag)
	}
	return nil
}

// addPreRun runs check before the command (after the flags and the
// environment are bound), after the checks already there.
func addPreRun(cmd *cobra.Command, check func(cmd *cobra.Command) error) {
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(c, args); err != nil {
				return err
			}
		}
		return check(c)
	}
}

// checkRange makes cmd refuse its integer flag outside lo..hi (intInRange).
func checkRange(cmd *cobra.Command, flag string, lo, hi int, unit string) {
	addPreRun(cmd, func(c *cobra.Command) error {
		v, err := c.Flags().GetInt(flag)
		if err != nil {
			return err
		}
		return intInRange(c, flag, v, lo, hi, unit)
	})
}

// checkNotEmpty makes cmd refuse its string flags given explicitly empty.
func checkNotEmpty(cmd *cobra.Command, flags ...string) {
	addPreRun(cmd, func(c *cobra.Command) error {
		for _, flag := range flags {
			v, err := c.Flags().GetString(flag)
			if err != nil {
				return err
			}
			if err := notEmpty(c, flag, v); err != nil {
				return err
			}
		}
		return nil
	})
}
