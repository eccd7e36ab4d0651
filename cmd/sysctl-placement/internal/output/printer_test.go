package output

import (
	"bytes"
	"errors"
	"testing"
)

// failAfter accepts n writes, then fails every one.
type failAfter struct {
	n   int
	buf bytes.Buffer
}

var errFull = errors.New("disk full")

func (f *failAfter) Write(b []byte) (int, error) {
	if f.n == 0 {
		return 0, errFull
	}
	f.n--
	return f.buf.Write(b)
}

func TestPrinter(t *testing.T) {
	t.Run("it writes what fmt writes and reports no error", func(t *testing.T) {
		var b bytes.Buffer
		p := NewPrinter(&b)
		p.Printf("%s=%d\n", "a", 1)
		p.Println("b", 2)
		if b.String() != "a=1\nb 2\n" || p.Err() != nil {
			t.Errorf("wrote %q, err %v", b.String(), p.Err())
		}
	})
	t.Run("the first failed write is kept and nothing is written after it", func(t *testing.T) {
		w := &failAfter{n: 1}
		p := NewPrinter(w)
		p.Println("kept")
		p.Println("lost")
		w.n = 5
		p.Println("not tried")
		if !errors.Is(p.Err(), errFull) || w.buf.String() != "kept\n" {
			t.Errorf("wrote %q, err %v; want the first line and the disk-full error", w.buf.String(), p.Err())
		}
	})
}
