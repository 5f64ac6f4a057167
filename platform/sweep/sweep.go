// Package sweep looks for secrets where they must never be: logs, etcd values,
// metrics, records. The secrets are read from where they legitimately live —
// clouds.yaml's passwords and application credential secrets, private keys'
// PEM bodies, token files — and each hit names its place, never the secret.
package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// Secret is one value to look for, and where it comes from (for the report).
type Secret struct {
	From  string
	Value string
}

// FromCloudsYAML reads every password and application_credential_secret of a
// clouds.yaml.
func FromCloudsYAML(path string) ([]Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("sweep: %s: %w", path, err)
	}
	var out []Secret
	var walk func(string, any)
	walk = func(at string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, sub := range x {
				if s, ok := sub.(string); ok && (k == "password" || k == "application_credential_secret" || k == "token") && s != "" {
					out = append(out, Secret{From: path + " " + at + "." + k, Value: s})
					continue
				}
				walk(at+"."+k, sub)
			}
		case []any:
			for i, sub := range x {
				walk(fmt.Sprintf("%s[%d]", at, i), sub)
			}
		}
	}
	walk("", doc)
	return out, nil
}

// FromPEMKeys reads the base64 body lines of every *-key.pem in dir.
func FromPEMKeys(dir string) ([]Secret, error) {
	keys, err := filepath.Glob(filepath.Join(dir, "*-key.pem"))
	if err != nil {
		return nil, err
	}
	var out []Secret
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) >= 40 && !strings.HasPrefix(l, "-----") {
				out = append(out, Secret{From: k, Value: l})
			}
		}
	}
	return out, nil
}

// FromFile reads a token file (its whole content, trimmed).
func FromFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Secret{}, err
	}
	return Secret{From: path, Value: strings.TrimSpace(string(b))}, nil
}

// Hit is a secret found somewhere it must not be.
type Hit struct {
	Where string // the place ("inventory log", "etcd /hikkoshi/...")
	From  string // where the secret belongs
}

func (h Hit) String() string { return fmt.Sprintf("a secret of %s is in %s", h.From, h.Where) }

// Places collects texts to search, by name.
type Places struct {
	names []string
	texts []string
}

// Add adds one place.
func (p *Places) Add(name, text string) {
	p.names = append(p.names, name)
	p.texts = append(p.texts, text)
}

// Len is how many places there are.
func (p *Places) Len() int { return len(p.names) }

// Find returns every secret found in every place. Secrets shorter than 8 bytes
// are not looked for (they would match by chance).
func (p *Places) Find(secrets []Secret) []Hit {
	var hits []Hit
	for i, text := range p.texts {
		for _, s := range secrets {
			if len(s.Value) >= 8 && strings.Contains(text, s.Value) {
				hits = append(hits, Hit{Where: p.names[i], From: s.From})
			}
		}
	}
	return hits
}
