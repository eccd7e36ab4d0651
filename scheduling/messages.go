package scheduling

// Message helpers: warnings are short (kubectl shows each on one line), prefixed so users
// tell ours from the API server's, and cut on a character boundary.

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WarningPrefix starts every warning, so users can tell ours from the API server's.
const WarningPrefix = "sysctl-placement: "

// maxWarningLen is the longest warning we emit; kubectl shows each on one line.
const maxWarningLen = 120

// maxWarnings is the most warnings one Decision gives (and one more that counts the
// rest): a namespace annotation naming thousands of unknown pools must not turn into
// thousands of lines for every pod.
const maxWarnings = 10

// MaxMessageLength bounds Decision.Message, the denial a user reads in kubectl's
// error and the API server sends back: every list in it is cut to a budget, and
// finish cuts the whole to this length as the last guard.
const MaxMessageLength = 4096

// warn adds a short user-facing warning, prefixed and cut to maxWarningLen; beyond
// maxWarnings it only counts.
func (p *planner) warn(msg string) {
	if len(p.d.Warnings) >= maxWarnings {
		p.moreWarnings++
		return
	}
	p.d.Warnings = append(p.d.Warnings, Truncate(WarningPrefix+msg, maxWarningLen))
}

// boundMessages caps what a Decision says, whatever the input: the message at
// MaxMessageLength and the warnings at maxWarnings plus one that counts the rest.
func (p *planner) boundMessages() {
	p.d.Message = Truncate(p.d.Message, MaxMessageLength)
	if p.moreWarnings > 0 {
		p.d.Warnings = append(p.d.Warnings, WarningPrefix+strconv.Itoa(p.moreWarnings)+" more warnings not shown")
	}
}

// ellipsis ends a cut text.
const ellipsis = "..."

// Truncate shortens s to at most n bytes, cut on a character boundary and ending in
// "...", so a warning, an Event note or a log line stays within its limit and valid
// UTF-8.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return cutOnRune(s, n-len(ellipsis)) + ellipsis
}

// cutOnRune returns the longest prefix of s of at most n bytes that ends on a
// character boundary.
func cutOnRune(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// listShort joins names with ", " within about budget bytes, ending with "and N more"
// when they do not fit, so a warning stays on one line.
func listShort(names []string, budget int) string {
	if len(names) == 0 {
		return ""
	}
	total := 0
	for i, n := range names {
		total += len(n)
		if i > 0 {
			total += 2
		}
	}
	if total <= budget || len(names) == 1 {
		return strings.Join(names, ", ")
	}
	var sb strings.Builder
	used := 0
	for i, n := range names {
		more := " and " + strconv.Itoa(len(names)-i) + " more"
		if i > 0 && used+2+len(n)+len(more) > budget {
			sb.WriteString(more)
			return sb.String()
		}
		if i > 0 {
			sb.WriteString(", ")
			used += 2
		}
		sb.WriteString(n)
		used += len(n)
	}
	return sb.String()
}

// distinct returns names without repeats, in order of first appearance. Plan sees at
// most MaxSysctls names, so a quadratic scan costs less than a map.
func distinct(names []string) []string {
	out := names[:0:0]
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// quoteShort quotes an annotation value for a warning, shortened if long.
func quoteShort(v string) string {
	if len(v) > 20 {
		v = cutOnRune(v, 20) + ellipsis
	}
	return strconv.Quote(v)
}
