// Package docscheck reads the contracts that README.md and docs/*.md name
// — command-line flags of pcd, connect and pcbench, Prometheus metric names
// and /v1 API routes — so that tests can hold each one against the code
// (cmd/*/docs_test.go for the flags, internal/e2e/docs_test.go for the
// metrics and routes).
//
// What counts as a mention is deliberately narrow, so that a failure is
// always a real mismatch:
//
//   - A flag is checked only where the text names its program: in a code
//     span that starts with the program ("`pcd edge --body-timeout`",
//     "`connect link web --expires 1h`"), or on a command line of a ```sh
//     block (after VAR=value words, in a pipeline, or inside $(...)). The
//     words after the program name its subcommand; a bare "`--timeout`" in
//     prose is not checked, since only the sentence says whose it is.
//     Comments (# ...) on a command line are not read.
//   - A metric is any pc_control_*, pc_edge_* or pc_agent_* name anywhere
//     in the text; its prefix says which process exports it. "pc_edge_*"
//     (a trailing star) names the family of all of them. Label names
//     written right after it ("pc_edge_requests_total{share,status}" or a
//     PromQL matcher {status="failed"}) are checked too.
//   - A route is a method followed by a /v1 path in a code span
//     ("`GET /v1/shares/:id/stats`"), or a /v1 path alone in a code span;
//     :id, {id} and <id> are all a parameter, and a query string is
//     ignored. A request the text says is refused ("`GET /v1/services/register`
//     is a 405") names no route.
//
// docs/security.md's "Findings of this review" section is a history: each
// finding describes what was wrong when it was found, in the words of the
// time, so it may name flags, routes or metrics that have since changed.
// That section is not read; the rest of security.md (the threat model and
// what the system does now) is.
package docscheck

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Programs are the commands whose flags the docs are checked for.
var Programs = []string{"pcd", "connect", "pcbench"}

// historySections are the sections (by heading, in a file) that are
// records of the past rather than a description of the present.
var historySections = map[string]string{
	"docs/security.md": "## Findings of this review",
}

// Mention is a metric or a route named by the docs.
type Mention struct {
	File string // relative to the repository root: "README.md", "docs/monitoring.md"
	Line int    // 1-based
	// Name is what is checked: "pc_edge_requests_total" or "pc_edge_*" for
	// a metric, "GET /v1/shares/{}/stats" or "/v1/shares" (no method) for a
	// route.
	Name string
	// Labels are a metric's label names as the docs give them, and
	// LabelsSaid whether they are the whole set or a subset.
	Labels     []string
	LabelsSaid LabelsSaid
	// Type is a metric's type as a table gives it ("counter", "gauge",
	// "histogram"), or "".
	Type string
}

// Where is "file:line", as Go's test output writes positions.
func (m Mention) Where() string { return fmt.Sprintf("%s:%d", m.File, m.Line) }

// Doc is one Markdown file, split into the pieces the extractors read.
type Doc struct {
	File string
	// Spans are the inline code spans outside fenced blocks (a span may
	// run over a line break).
	Spans []Span
	// Commands are the command lines of ```sh (bash, shell, console)
	// blocks, continuation lines joined.
	Commands []Span
	// Lines is the text that is read, history sections blanked out.
	Lines []string
}

// Span is a piece of text and the line it starts on.
type Span struct {
	Line int
	Text string
	// After is the start of the text that follows a code span in its
	// paragraph (up to 40 bytes).
	After string
}

// Files lists the documentation that is checked: README.md and docs/*.md,
// relative to root.
func Files(root string) ([]string, error) {
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	files := []string{"README.md"}
	for _, d := range docs {
		files = append(files, "docs/"+filepath.Base(d))
	}
	sort.Strings(files[1:])
	return files, nil
}

// Load reads and splits every file of Files.
func Load(root string) ([]*Doc, error) {
	files, err := Files(root)
	if err != nil {
		return nil, err
	}
	var docs []*Doc
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		docs = append(docs, Parse(f, string(b)))
	}
	return docs, nil
}

var (
	fenceRE   = regexp.MustCompile("^ {0,3}(```+|~~~+)\\s*([A-Za-z]*)")
	headingRE = regexp.MustCompile(`^#{1,6} `)
)

// Parse splits one Markdown file (file is its name for positions).
func Parse(file, text string) *Doc {
	d := &Doc{File: file, Lines: strings.Split(text, "\n")}
	if h, ok := historySections[file]; ok {
		// Blank the section out, down to the next heading of its level or
		// above (a "#" line in a fenced block is no heading).
		level, skip, fenced := strings.Index(h, " "), false, false
		for i, l := range d.Lines {
			if fenceRE.MatchString(l) {
				fenced = !fenced
			}
			if hl := headingRE.FindString(l); hl != "" && !fenced {
				if strings.TrimSpace(l) == h {
					skip = true
				} else if len(hl)-1 <= level {
					skip = false
				}
			}
			if skip {
				d.Lines[i] = ""
			}
		}
	}
	var (
		fence     string // the open fence, "" outside a block
		shell     bool   // the open block is a shell block
		para      []string
		paraStart int
		cont      strings.Builder // a shell command continued with "\"
		contStart int
	)
	flush := func() {
		if len(para) > 0 {
			d.Spans = append(d.Spans, codeSpans(paraStart, para)...)
		}
		para = nil
	}
	for i, l := range d.Lines {
		n := i + 1
		if m := fenceRE.FindStringSubmatch(l); m != nil {
			if fence == "" {
				flush()
				fence = m[1]
				switch strings.ToLower(m[2]) {
				case "sh", "bash", "shell", "console":
					shell = true
				default:
					shell = false
				}
				continue
			}
			if strings.HasPrefix(strings.TrimSpace(l), fence) && strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(l), fence[:1])) == "" {
				fence = ""
				continue
			}
		}
		if fence != "" {
			if !shell {
				continue
			}
			if cont.Len() == 0 {
				contStart = n
			}
			if s, ok := strings.CutSuffix(strings.TrimRight(l, " \t"), "\\"); ok {
				cont.WriteString(s + " ")
				continue
			}
			cont.WriteString(l)
			d.Commands = append(d.Commands, Span{Line: contStart, Text: strings.TrimPrefix(strings.TrimSpace(cont.String()), "$ ")})
			cont.Reset()
			continue
		}
		// Markdown tables: each row is a block of its own (a span cannot
		// cross rows).
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "|") {
			flush()
			if strings.TrimSpace(l) != "" {
				d.Spans = append(d.Spans, codeSpans(n, []string{l})...)
			}
			continue
		}
		if len(para) == 0 {
			paraStart = n
		}
		para = append(para, l)
	}
	flush()
	return d
}

// codeSpans finds the code spans of a paragraph (CommonMark: a run of N
// backticks closed by the next run of exactly N).
func codeSpans(first int, lines []string) []Span {
	text := strings.Join(lines, "\n")
	var out []Span
	lineAt := func(off int) int { return first + strings.Count(text[:off], "\n") }
	for i := 0; i < len(text); {
		if text[i] != '`' {
			i++
			continue
		}
		j := i
		for j < len(text) && text[j] == '`' {
			j++
		}
		run := j - i
		end := -1
		for k := j; k < len(text); {
			if text[k] != '`' {
				k++
				continue
			}
			l := k
			for l < len(text) && text[l] == '`' {
				l++
			}
			if l-k == run {
				end = k
				break
			}
			k = l
		}
		if end < 0 {
			i = j // an unmatched run is literal text
			continue
		}
		content := strings.ReplaceAll(text[j:end], "\n", " ")
		after := text[end+run:]
		after = strings.ReplaceAll(after[:min(len(after), 40)], "\n", " ")
		out = append(out, Span{lineAt(j), strings.TrimSpace(content), after})
		i = end + run
	}
	return out
}

// isProgram reports the program a command word runs ("bin/pcd" → "pcd"),
// or "".
func isProgram(word string) string {
	dir, base := path.Split(word)
	if dir != "" && path.Base(dir) != "bin" {
		return "" // "cmd/pcd" is a directory, "bin/pcd" the program
	}
	for _, p := range Programs {
		if base == p {
			return p
		}
	}
	return ""
}

var assignRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// Invocations returns the command lines of a shell text that run one of
// Programs, each from the program on: every segment of a pipeline or
// list, and every $(...) substitution, is a command of its own.
func Invocations(text string) [][]string {
	var out [][]string
	for _, seg := range segments(text) {
		if inv := invocation(seg); inv != nil {
			out = append(out, inv)
		}
	}
	return out
}

// invocation returns a simple command's words from the program on when it
// runs one of Programs (after VAR=value words), else nil.
func invocation(words []string) []string {
	for len(words) > 0 && assignRE.MatchString(words[0]) {
		words = words[1:]
	}
	if len(words) == 0 || isProgram(words[0]) == "" {
		return nil
	}
	return append([]string{isProgram(words[0])}, words[1:]...)
}

// segments splits shell text into simple commands, as words: quotes are
// removed, $(...) substitutions become commands of their own (and the word
// "$(…)" in place), comments are dropped.
func segments(text string) [][]string {
	var (
		out   [][]string
		cur   []string
		word  strings.Builder
		inW   bool
		quote byte
	)
	endWord := func() {
		if inW {
			cur = append(cur, word.String())
		}
		word.Reset()
		inW = false
	}
	endSeg := func() {
		endWord()
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur = nil
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '$' && i+1 < len(text) && text[i+1] == '(' && quote != '\'':
			// Find the matching parenthesis.
			depth, j := 0, i+1
			for ; j < len(text); j++ {
				if text[j] == '(' {
					depth++
				} else if text[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			out = append(out, segments(text[i+2:min(j, len(text))])...)
			word.WriteString("$(…)")
			inW = true
			i = j
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				word.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote = c
			inW = true
		case c == '#' && !inW:
			// A comment runs to the end of the line.
			for i < len(text) && text[i] != '\n' {
				i++
			}
			endSeg()
		case c == '|' || c == ';' || c == '&' || c == '\n' || c == '(' || c == ')':
			endSeg()
		case c == ' ' || c == '\t':
			endWord()
		default:
			word.WriteByte(c)
			inW = true
		}
	}
	endSeg()
	return out
}

// CommandLine is one command line of the docs that runs one of Programs.
type CommandLine struct {
	File  string
	Line  int
	Words []string // from the program on: "connect", "link", "web", "--expires", "1h"
}

// Where is "file:line", as Go's test output writes positions.
func (c CommandLine) Where() string { return fmt.Sprintf("%s:%d", c.File, c.Line) }

// CommandLines returns the command lines of the docs that run one of
// Programs: code spans that start with the program, and the commands of
// shell blocks.
func CommandLines(docs []*Doc) []CommandLine {
	var out []CommandLine
	for _, d := range docs {
		for _, s := range d.Spans {
			// A code span in prose names a program only when it starts with
			// it: "`pcd edge --tunnel …`", not "`go tool pprof bin/pcd`".
			if segs := segments(s.Text); len(segs) > 0 && strings.HasPrefix(s.Text, segs[0][0]) {
				if inv := invocation(segs[0]); inv != nil {
					out = append(out, CommandLine{d.File, s.Line, inv})
				}
			}
		}
		for _, s := range d.Commands {
			for _, inv := range Invocations(s.Text) {
				out = append(out, CommandLine{d.File, s.Line, inv})
			}
		}
	}
	return out
}

var (
	longRE  = regexp.MustCompile(`^--[A-Za-z][A-Za-z0-9-]*$`)
	shortRE = regexp.MustCompile(`^-[A-Za-z]+$`)
)

// flagNames returns the flags a command word names: "--name", "--name=v",
// "--tls-cert/--tls-key" (two), "-s", "-sv" (two shorthands).
func flagNames(w string) []string {
	var out []string
	for _, part := range strings.Split(w, "/") {
		part, _, _ = strings.Cut(part, "=")
		switch {
		case longRE.MatchString(part):
			out = append(out, part)
		case shortRE.MatchString(part) && part == w:
			for _, c := range part[1:] {
				out = append(out, "-"+string(c))
			}
		}
	}
	return out
}

// Metrics returns every pc_control_*, pc_edge_* and pc_agent_* name of the
// docs ("pc_edge_*" for the family). In a table with "Metric", "Type" and
// "Labels" columns, a row's type and labels (its backquoted words, none
// when the cell is empty) go with each metric of its first cell.
func Metrics(docs []*Doc) []Mention {
	var out []Mention
	for _, d := range docs {
		var cols map[string]int // the columns of the table being read
		for i, l := range d.Lines {
			cells := tableRow(l)
			switch {
			case cells == nil:
				cols = nil
			case i+1 < len(d.Lines) && separatorRE.MatchString(d.Lines[i+1]):
				cols = map[string]int{}
				for j, c := range cells {
					cols[strings.ToLower(c)] = j
				}
			}
			for _, m := range metricRE.FindAllStringSubmatchIndex(l, -1) {
				mt := Mention{File: d.File, Line: i + 1, Name: l[m[0]:m[1]]}
				if m[4] >= 0 { // {labels}
					mt.Name = l[m[0]:m[4]]
					mt.Labels, mt.LabelsSaid = labelList(l[m[4]+1 : m[5]-1])
				}
				if row, ok := metricRow(cols, cells); ok && strings.Contains(cells[0], mt.Name) {
					mt.Type = row.Type
					if mt.LabelsSaid == LabelsNone {
						mt.Labels, mt.LabelsSaid = row.Labels, LabelsExact
					}
				}
				out = append(out, mt)
			}
		}
	}
	return out
}

// LabelsSaid is what the docs say about a metric's labels.
type LabelsSaid int

const (
	LabelsNone   LabelsSaid = iota // nothing
	LabelsExact                    // these are its labels ({share,status}, a table's Labels cell)
	LabelsSubset                   // it has these (a PromQL matcher: {status="failed"})
)

var (
	metricRE    = regexp.MustCompile(`\bpc_(?:control|edge|agent)_[a-z0-9_]*(\*)?(\{[^}\n]*\})?`)
	labelRE     = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:(=~|!=|!~|=)\s*"[^"]*")?\s*$`)
	separatorRE = regexp.MustCompile(`^\s*\|[\s:|-]+\|\s*$`)
	backquoted  = regexp.MustCompile("`([^`]+)`")
	parens      = regexp.MustCompile(`\([^)]*\)`)
)

// labelList reads "share,status" or `status="failed"`; nil, LabelsNone
// when it is neither.
func labelList(s string) ([]string, LabelsSaid) {
	said := LabelsExact
	var labels []string
	for _, p := range strings.Split(s, ",") {
		lm := labelRE.FindStringSubmatch(p)
		if lm == nil {
			return nil, LabelsNone
		}
		labels = append(labels, lm[1])
		if lm[2] != "" {
			said = LabelsSubset
		}
	}
	return labels, said
}

// tableRow returns the cells of a Markdown table row, or nil.
func tableRow(l string) []string {
	t := strings.TrimSpace(l)
	if !strings.HasPrefix(t, "|") || !strings.HasSuffix(t, "|") || len(t) < 2 {
		return nil
	}
	cells := strings.Split(t[1:len(t)-1], "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

type metricRowInfo struct {
	Type   string
	Labels []string
}

// metricRow reads the type and labels of a row of a metrics table.
func metricRow(cols map[string]int, cells []string) (metricRowInfo, bool) {
	ti, ok1 := cols["type"]
	li, ok2 := cols["labels"]
	mi, ok3 := cols["metric"]
	if !ok1 || !ok2 || !ok3 || mi != 0 || ti >= len(cells) || li >= len(cells) {
		return metricRowInfo{}, false
	}
	r := metricRowInfo{Type: cells[ti], Labels: []string{}}
	// "`outcome` (`success`, `failure`)": the parentheses hold values.
	for _, m := range backquoted.FindAllStringSubmatch(parens.ReplaceAllString(cells[li], ""), -1) {
		r.Labels = append(r.Labels, m[1])
	}
	return r, true
}

var (
	routeRE   = regexp.MustCompile(`^(?:(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) )?(/v1(?:/[^\s?#` + "`" + `]*)?)(?:[?#]\S*)?(?: .*)?$`)
	paramRE   = regexp.MustCompile(`^(?::[A-Za-z]+|\{[A-Za-z]+\}|<[^>]+>)$`)
	methodsRE = regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)/`)
	// refusedRE follows a request the docs say the API refuses
	// ("`GET /v1/services/register` is a 405"): it names no route.
	refusedRE = regexp.MustCompile(`^\s*(?:is|answers|gets) (?:a )?40[45]\b`)
)

// Routes returns every /v1 route named in a code span, its parameters
// written {} ("GET /v1/shares/{}/stats"; a path alone has no method).
func Routes(docs []*Doc) []Mention {
	var out []Mention
	for _, d := range docs {
		for _, s := range d.Spans {
			m := routeRE.FindStringSubmatch(s.Text)
			if m == nil || methodsRE.MatchString(s.Text) || refusedRE.MatchString(s.After) {
				continue
			}
			p := strings.TrimSuffix(m[2], "/")
			if p == "" {
				p = "/v1"
			}
			parts := strings.Split(p, "/")
			for i, part := range parts {
				if paramRE.MatchString(part) {
					parts[i] = "{}"
				}
			}
			name := strings.Join(parts, "/")
			if m[1] != "" {
				name = m[1] + " " + name
			}
			out = append(out, Mention{File: d.File, Line: s.Line, Name: name})
		}
	}
	return out
}
