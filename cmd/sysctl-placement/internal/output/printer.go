package output

import (
	"fmt"
	"io"
)

// Printer writes a command's output and keeps the first write error, as bufio.Writer
// does: a command prints line by line and reports a failed write (a closed pipe, a
// full disk) once, from Err, instead of checking every line.
type Printer struct {
	w   io.Writer
	err error
}

// NewPrinter returns a Printer writing to w.
func NewPrinter(w io.Writer) *Printer { return &Printer{w: w} }

// Printf writes as fmt.Fprintf does, unless a write already failed.
func (p *Printer) Printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// Println writes as fmt.Fprintln does, unless a write already failed.
func (p *Printer) Println(args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintln(p.w, args...)
	}
}

// Err is the first write error, or nil.
func (p *Printer) Err() error { return p.err }
