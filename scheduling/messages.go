package scheduling

// Message helpers: warnings are short (kubectl shows each on one line), prefixed so users
// tell ours from the API server's, and cut on a character boundary.

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// WarningPrefix starts every warning, so users can tell ours from the API server's.
const WarningPrefix = "sysctl-placement: "

// maxWarningLen is the longest warning we emit; kubectl shows each on one line.
const maxWarningLen = 120

// warn adds a short user-facing warning, prefixed and cut to maxWarningLen.
func (p *planner) warn(msg string) {
	p.d.Warnings = append(p.d.Warnings, Truncate(WarningPrefix+msg, maxWarningLen))
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

// quoteShort quotes an annotation value for a warning, shortened if long.
func quoteShort(v string) string {
	if len(v) > 20 {
		v = cutOnRune(v, 20) + ellipsis
	}
	return strconv.Quote(v)
}
