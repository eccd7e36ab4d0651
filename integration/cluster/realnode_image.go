package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// writeImageArchive writes an image of one file, binary at inImage and its
// entrypoint, as the archive `docker save` writes and `ctr images import` reads, so a
// real node runs this repository's code without a registry or a Docker daemon.
func writeImageArchive(archive, ref, binary, inImage string) error {
	content, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var layer bytes.Buffer
	if err := writeTar(&layer, map[string][]byte{inImage[1:]: content}, 0o755); err != nil {
		return err
	}
	diffID := sha256.Sum256(layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string{inImage}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Clean(archive))
	if err != nil {
		return err
	}
	if err := writeTar(f, map[string][]byte{"manifest.json": manifest, "config.json": config, "layer.tar": layer.Bytes()}, 0o644); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeTar(w io.Writer, files map[string][]byte, mode int64) error {
	tw := tar.NewWriter(w)
	for name, content := range files {
		hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(content)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(content); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ImageDirEnv names the directory where `go tool task image` wrote the release image
// (image.json and sysctl-placement.tar). Default: bin/image in the repository.
const ImageDirEnv = "SYSCTL_PLACEMENT_IMAGE_DIR"

// ReleaseImage is the image `go tool task image` built, as a real node imports it.
type ReleaseImage struct {
	// Ref is name:tag@digest, as the release manifests name it.
	Ref string
	// Name is the image's repository, without tag or digest.
	Name string
	// Archive is the image archive that `ctr images import` reads.
	Archive string
	// Dir holds image.json, what the packaged chart is pinned to.
	Dir string
}

// BuiltReleaseImage returns the image `go tool task image` wrote, or an error that
// says to run it: the image is built ahead, never inside a test.
func BuiltReleaseImage() (ReleaseImage, error) {
	dir := os.Getenv(ImageDirEnv)
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "image")
	}
	data, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return ReleaseImage{}, fmt.Errorf("no release image in %s: run `go tool task image` first: %w", dir, err)
	}
	var built struct{ Name, Tag, Digest string }
	if err := json.Unmarshal(data, &built); err != nil {
		return ReleaseImage{}, fmt.Errorf("%s: %w", filepath.Join(dir, "image.json"), err)
	}
	img := ReleaseImage{Ref: built.Name + ":" + built.Tag + "@" + built.Digest, Name: built.Name, Archive: filepath.Join(dir, "sysctl-placement.tar"), Dir: dir}
	if _, err := os.Stat(img.Archive); err != nil {
		return ReleaseImage{}, fmt.Errorf("run `go tool task image` first: %w", err)
	}
	return img, nil
}
