package scheduling

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{"a text within the limit is kept", "short", 10, "short"},
		{"a text at the limit is kept", "0123456789", 10, "0123456789"},
		{"a longer text ends in an ellipsis within the limit", "0123456789abc", 10, "0123456..."},
		{"a character is never cut in half", "ab€€€€", 9, "ab€..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Truncate(tc.in, tc.n)
			if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

func TestListShort(t *testing.T) {
	tests := []struct {
		name   string
		names  []string
		budget int
		want   string
	}{
		{"names that fit are all listed", []string{"a", "b", "c"}, 20, "a, b, c"},
		{"names that do not fit end with how many more", []string{"kernel.shmmax", "kernel.shmall", "kernel.sem"}, 20, "kernel.shmmax and 2 more"},
		{"a single long name is kept whole", []string{strings.Repeat("x", 30)}, 10, strings.Repeat("x", 30)},
		{"no names is empty", nil, 10, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := listShort(tc.names, tc.budget); got != tc.want {
				t.Errorf("listShort = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQuoteShort(t *testing.T) {
	if got := quoteShort("remove"); got != `"remove"` {
		t.Errorf("quoteShort = %s", got)
	}
	if got := quoteShort(strings.Repeat("é", 15)); !utf8.ValidString(got) || got != `"`+strings.Repeat("é", 10)+`..."` {
		t.Errorf("quoteShort of a long value = %s; want 20 bytes on a character boundary and an ellipsis", got)
	}
}

func TestWarningsArePrefixedAndShort(t *testing.T) {
	var p planner
	p.warn(strings.Repeat("long ", 40))
	if w := p.d.Warnings[0]; !strings.HasPrefix(w, WarningPrefix) || len(w) > maxWarningLen {
		t.Errorf("warning %q: want the prefix and at most %d bytes", w, maxWarningLen)
	}
}
