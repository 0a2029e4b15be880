package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/privateconnect/pc/sdk/client"
)

// col is one column of a table of T.
type col[T any] struct {
	header string
	value  func(T) string
}

// printList prints items as a table, or their JSON with --json. A non-empty
// next cursor is reported on stderr.
func printList[T any](a *app, items []T, next string, cols []col[T]) error {
	if a.jsonOut {
		if items == nil {
			items = []T{}
		}
		return a.printJSON(items)
	}
	if err := printTableRows(a, items, cols, true); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(a.stderr, "more results: add --cursor %s (or use --all)\n", next)
	}
	return nil
}

// printTableRows prints items as aligned rows, with the header line first
// when header is set.
func printTableRows[T any](a *app, items []T, cols []col[T], header bool) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	if header {
		headers := make([]string, len(cols))
		for i, c := range cols {
			headers[i] = c.header
		}
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
	}
	for _, it := range items {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = clean(c.value(it))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// show prints one object as "field  value" lines, or its JSON with --json.
func (a *app) show(v any) error {
	if a.jsonOut {
		return a.printJSON(v)
	}
	return printDetail(a.stdout, v)
}

// done reports a mutation: msg for humans, the API's data with --json.
func (a *app) done(msg string) error {
	if a.jsonOut {
		if len(a.raw) == 0 {
			a.raw = json.RawMessage("{}")
		}
		return a.printJSON(nil)
	}
	_, err := fmt.Fprintln(a.stdout, msg)
	return err
}

// printJSON prints the raw data of the last API answer, exactly as the server
// sent it (indented), or v when there is none.
func (a *app) printJSON(v any) error {
	var out []byte
	if len(a.raw) > 0 {
		var buf bytes.Buffer
		if err := json.Indent(&buf, a.raw, "", "  "); err != nil {
			return err
		}
		out = buf.Bytes()
	} else {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		out = b
	}
	out = append(out, '\n')
	_, err := a.stdout.Write(out)
	return err
}

// printJSONLine is printJSON on one line: `connect expose --json` prints
// its service so, then one line per agent event (NDJSON).
func (a *app) printJSONLine(v any) error {
	var buf bytes.Buffer
	if len(a.raw) > 0 {
		if err := json.Compact(&buf, a.raw); err != nil {
			return err
		}
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	buf.WriteByte('\n')
	_, err := a.stdout.Write(buf.Bytes())
	return err
}

// printDetail prints the exported fields of a struct (or pointer to one) with
// their JSON names, one per line, skipping empty ones. Nested values are
// printed as compact JSON.
func printDetail(w io.Writer, v any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := strings.Split(f.Tag.Get("json"), ",")
		name := tag[0]
		if name == "-" || (slices.Contains(tag[1:], "omitempty") && rv.Field(i).IsZero()) {
			continue // as in the JSON form
		}
		if name == "" {
			name = f.Name
		}
		s := formatValue(rv.Field(i))
		if s == "" {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, clean(s))
	}
	return tw.Flush()
}

var timeType = reflect.TypeOf(time.Time{})

// formatValue renders one field for printDetail; "" means "leave it out".
func formatValue(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Type() == timeType {
		return fmtTime(v.Interface().(time.Time))
	}
	if raw, ok := v.Interface().(json.RawMessage); ok {
		if len(raw) == 0 || string(raw) == "null" {
			return ""
		}
		return compactJSON(raw)
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'f', -1, 64)
	case reflect.Slice:
		if v.Len() == 0 {
			return ""
		}
		if v.Type().Elem().Kind() == reflect.String {
			return strings.Join(v.Interface().([]string), ", ")
		}
	case reflect.Map:
		if v.Len() == 0 {
			return ""
		}
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return string(b)
}

func compactJSON(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// clean keeps a table cell on one line.
func clean(s string) string {
	return strings.NewReplacer("\n", " ", "\t", " ", "\r", " ").Replace(s)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func itoa[T int | int64](n T) string { return strconv.FormatInt(int64(n), 10) }

// humanBytes formats a byte count with binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// listFlags are the pagination flags of an ls command.
type listFlags struct {
	limit  int
	cursor string
	all    bool
}

func addListFlags(cmd *cobra.Command) *listFlags {
	lf := &listFlags{}
	cmd.Flags().IntVar(&lf.limit, "limit", 0, "page size (server default 50, max 500)")
	cmd.Flags().StringVar(&lf.cursor, "cursor", "", "cursor of the page to fetch (printed after a partial page)")
	cmd.Flags().BoolVar(&lf.all, "all", false, "fetch every page")
	checkRange(cmd, "limit", 1, 500, "")
	return lf
}

// fetch gets one page, or every page with --all.
func fetch[T any](a *app, cmd *cobra.Command, lf *listFlags, page func(ctx context.Context, lo client.ListOptions) ([]T, string, error)) ([]T, string, error) {
	ctx := a.ctx(cmd)
	if lf.all {
		items, err := client.All(ctx, page)
		a.raw = nil // several pages: print the decoded items
		return items, "", err
	}
	return page(ctx, client.ListOptions{Limit: lf.limit, Cursor: lf.cursor})
}

// argBounds turns an argument count into leaf bounds: n >= 0 is exactly n,
// n < 0 is at least -n.
func argBounds(n int) (int, int) {
	if n < 0 {
		return -n, -1
	}
	return n, n
}

// listCmd builds an ls command from a page function and table columns.
func listCmd[T any](a *app, use, short, example string, nargs int, page func(ctx context.Context, c *client.Client, args []string, lo client.ListOptions) ([]T, string, error), cols []col[T]) *cobra.Command {
	var lf *listFlags
	lo, hi := argBounds(nargs)
	cmd := leaf(use, short, example, lo, hi, func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		items, next, err := fetch(a, cmd, lf, func(ctx context.Context, lo client.ListOptions) ([]T, string, error) {
			return page(ctx, c, args, lo)
		})
		if err != nil {
			return err
		}
		return printList(a, items, next, cols)
	})
	lf = addListFlags(cmd)
	return cmd
}

// getCmd builds a command that fetches one object by its argument(s) and shows it.
func getCmd[T any](a *app, use, short, example string, nargs int, get func(ctx context.Context, c *client.Client, args []string) (T, error)) *cobra.Command {
	lo, hi := argBounds(nargs)
	return leaf(use, short, example, lo, hi, func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		v, err := get(a.ctx(cmd), c, args)
		if err != nil {
			return err
		}
		return a.show(v)
	})
}

// actionCmd builds a command that performs a mutation and prints a message.
func actionCmd(a *app, use, short, example string, nargs int, act func(ctx context.Context, c *client.Client, args []string) (string, error)) *cobra.Command {
	lo, hi := argBounds(nargs)
	return leaf(use, short, example, lo, hi, func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		msg, err := act(a.ctx(cmd), c, args)
		if err != nil {
			return err
		}
		return a.done(msg)
	})
}
