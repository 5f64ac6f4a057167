// Package cliout is how Hikkoshi's command lines print: a table for a person by
// default, JSON or YAML for a script (-o json, -o yaml), the same protobuf messages
// the gRPC API answers with, in the API's own JSON field names.
package cliout

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Format is an output format: "table", "json" or "yaml".
type Format string

const (
	Table Format = "table"
	JSON  Format = "json"
	YAML  Format = "yaml"
)

// Parse checks an -o value.
func Parse(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, JSON, YAML:
		return f, nil
	}
	return "", fmt.Errorf("-o %q: use table, json or yaml", s)
}

// Structured is true for the formats a script reads (json, yaml).
func (f Format) Structured() bool { return f == JSON || f == YAML }

// Message writes m as JSON or YAML. A stream of messages in YAML is a stream of
// documents, each opened by "---".
func (f Format) Message(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	if f == YAML {
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "---\n%s", y)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// Print writes m as JSON or YAML when f is structured; else it calls table with a
// tab writer it flushes.
func (f Format) Print(w io.Writer, m proto.Message, table func(tw *tabwriter.Writer)) error {
	if f.Structured() {
		return f.Message(w, m)
	}
	tw := NewTabWriter(w)
	table(tw)
	return tw.Flush()
}

// NewTabWriter is the tab writer of every table: columns two spaces apart.
func NewTabWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// OrDash is s, or "-" for nothing.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Short turns an enum value's name into a word: Short("JOB_STATE_RUNNING",
// "JOB_STATE_") is "running".
func Short(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }
