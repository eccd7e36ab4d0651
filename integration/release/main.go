// Command release builds what a release of sysctl-placement ships, from this
// repository and the Go module proxy only: no Docker daemon, no base image pulled.
//
//	release binary    -repo DIR -out FILE  the binary for this machine, stamped
//	release image     -repo DIR -out DIR   the OCI image (linux/amd64 + linux/arm64)
//	release manifests -repo DIR -image-dir DIR -out DIR
//	                                       the deploy overlays naming that image by digest
//	release krew      -repo DIR -out DIR   the kubectl plugin's archives (linux, darwin;
//	                                       amd64, arm64) and its krew manifest
//
// It is a module of its own (like integration/etcd) so that go-containerregistry's and
// kustomize's dependencies never change the versions the control plane is built with.
// `go tool task image` and `go tool task release-manifests` run it.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: release binary|image|manifests|krew [flags]")
		os.Exit(1)
	}
	var err error
	switch os.Args[1] {
	case "binary":
		err = runBinary(os.Args[2:])
	case "image":
		err = runImage(os.Args[2:])
	case "manifests":
		err = runManifests(os.Args[2:])
	case "krew":
		err = runKrew(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want binary, image, manifests or krew", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func runBinary(args []string) error {
	fs := flag.NewFlagSet("binary", flag.ContinueOnError)
	repo := fs.String("repo", "../..", "the repository's root (the main module)")
	out := fs.String("out", "../../bin/sysctl-placement", "the binary to write")
	version := fs.String("version", "", "the version to stamp (default: git describe --tags --always --dirty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, err := readSource(*repo, *version)
	if err != nil {
		return err
	}
	if err := buildBinary(*repo, *out, v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}, src); err != nil {
		return err
	}
	fmt.Printf("%s (%s, %s)\n", *out, src.version, src.revision)
	return nil
}

func runImage(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var o imageOptions
	fs.StringVar(&o.Repo, "repo", "../..", "the repository's root (the main module)")
	fs.StringVar(&o.Out, "out", "../../bin/image", "where the OCI layout, the tarball, the binaries and image.json go")
	fs.StringVar(&o.Name, "name", DefaultImageName, "the image's repository (what the deploy manifests name)")
	fs.StringVar(&o.Version, "version", "", "the version to stamp and tag (default: git describe --tags --always --dirty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	built, err := BuildImage(o, os.Stdout)
	if err != nil {
		return err
	}
	fmt.Println(built.Reference())
	return nil
}

func runManifests(args []string) error {
	fs := flag.NewFlagSet("manifests", flag.ContinueOnError)
	repo := fs.String("repo", "../..", "the repository's root")
	imageDir := fs.String("image-dir", "../../bin/image", "where `release image` wrote image.json")
	out := fs.String("out", "../../bin/release", "where the overlays and their rendered YAML go")
	name := fs.String("name", "", "the registry repository the image was pushed to (default: the one it was built for)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	built, err := ReadBuilt(*imageDir)
	if err != nil {
		return err
	}
	if *name != "" {
		built.Name = *name
	}
	files, err := WriteReleaseManifests(*repo, *out, built)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println(f)
	}
	return nil
}

func runKrew(args []string) error {
	fs := flag.NewFlagSet("krew", flag.ContinueOnError)
	var o krewOptions
	fs.StringVar(&o.Repo, "repo", "../..", "the repository's root (the main module)")
	fs.StringVar(&o.Out, "out", "../../bin/krew", "where the archives and sysctl-placement.yaml go")
	fs.StringVar(&o.Version, "version", "", "the version to stamp (default: git describe --tags --always --dirty)")
	fs.StringVar(&o.DownloadURL, "download-url", DefaultDownloadURL, "the archives' base URL; %s is replaced by the release version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	manifest, archives, err := BuildKrew(o, os.Stdout)
	if err != nil {
		return err
	}
	for _, a := range archives {
		fmt.Printf("%s sha256:%s\n", a.Path, a.SHA256)
	}
	fmt.Println(manifest)
	return nil
}
