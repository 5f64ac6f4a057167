package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// diskMarker prints the server marker at the end of an image's bytes (name or ID) in
// a cloud's Glance, with the image's size and SHA-256.
func diskMarker(args []string) error {
	fs := flag.NewFlagSet("disk-marker", flag.ContinueOnError)
	cloudName := fs.String("cloud", "new", "the clouds.yaml entry whose Glance holds the image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("disk-marker: give one image name or ID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := open(ctx, *cloudName)
	if err != nil {
		return err
	}
	ic, err := c.Image()
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	if found, err := devcloud.FindImage(ctx, ic, id); err == nil {
		id = found
	}
	m, err := devcloud.ReadDiskMarker(ctx, ic, id)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"image": id, "size": m.Size, "sha256": m.SHA256, "marker": m.Fields})
}
