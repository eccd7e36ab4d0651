// Command package-chart writes the Helm chart as a versioned .tgz pinned to the image
// `go tool task image` built (chartcheck.Package), and prints its path and sha256:
//
//	package-chart -image-dir bin/image -out bin [-name registry/repo]
//
// `go tool task release` runs it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sysctl-placement/sysctl-placement/deploy/chartcheck"
)

func main() {
	imageDir := flag.String("image-dir", "../../bin/image", "where `release image` wrote image.json")
	out := flag.String("out", "../../bin", "where the .tgz goes")
	name := flag.String("name", "", "the registry repository the image was pushed to (default: the one it was built for)")
	flag.Parse()
	img, err := chartcheck.ReadImage(*imageDir)
	if err != nil {
		fail(err)
	}
	if *name != "" {
		img.Name = *name
	}
	p, err := chartcheck.Package(chartcheck.ChartDir(), img, *out)
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s\n  chart %s, image %s\n  sha256:%s\n", p.Path, p.Version, img.Reference(), p.SHA256)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "package-chart:", err)
	os.Exit(1)
}
