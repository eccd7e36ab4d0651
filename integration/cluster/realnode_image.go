package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
