package haproxycfg

import (
	"fmt"
	"strings"
)

// line is one logical line of a file: its physical lines joined where one ended in a
// backslash, and the number of its first physical line.
type line struct {
	text string
	num  int
}

// lines splits a file into logical lines.
func lines(data string) []line {
	var out []line
	phys := strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n")
	for i := 0; i < len(phys); i++ {
		l := line{text: phys[i], num: i + 1}
		if continued(l.text) && i+1 < len(phys) {
			// Joined with a builder: a file of continued lines is linear, not
			// quadratic, to read.
			var b strings.Builder
			b.WriteString(l.text[:len(l.text)-1])
			for i+1 < len(phys) {
				i++
				next := strings.TrimLeft(phys[i], " \t")
				b.WriteByte(' ')
				if !continued(next) || i+1 >= len(phys) {
					b.WriteString(next)
					break
				}
				b.WriteString(next[:len(next)-1])
			}
			l.text = b.String()
		}
		out = append(out, l)
	}
	return out
}

// continued reports whether a physical line ends in a backslash that escapes the
// line's end (an odd number of them: "\\" at the end is an escaped backslash).
func continued(s string) bool {
	n := 0
	for n < len(s) && s[len(s)-1-n] == '\\' {
		n++
	}
	return n%2 == 1
}

// words splits a logical line into words (see the package doc), reading
// environment variables from env. A comment ends the line.
func words(s string, env func(string) (string, bool)) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	quote := byte(0) // '"' or '\'' while inside quotes
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
			continue
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("a backslash ends the line")
			}
			i++
			switch e := s[i]; e {
			case ' ', '#', '\\', '\'', '"', '$':
				cur.WriteByte(e)
			case 't':
				cur.WriteByte('\t')
			case 'n':
				cur.WriteByte('\n')
			case 'r':
				cur.WriteByte('\r')
			case 'x':
				if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
					return nil, fmt.Errorf(`\x needs two hex digits`)
				}
				cur.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
				i += 2
			default:
				// haproxy keeps an unknown escape as it is written.
				cur.WriteByte('\\')
				cur.WriteByte(e)
			}
			inWord = true
			continue
		case quote == '"':
			switch c {
			case '"':
				quote = 0
			case '$':
				v, n, err := variable(s[i:], env)
				if err != nil {
					return nil, err
				}
				cur.WriteString(v)
				i += n - 1
			default:
				cur.WriteByte(c)
			}
			continue
		}
		switch c {
		case '"', '\'':
			quote, inWord = c, true
		case ' ', '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		case '#':
			if inWord {
				out = append(out, cur.String())
			}
			return out, nil
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("a %c quote is not closed", quote)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// variable reads "$NAME" or "${NAME}" at the start of s and returns its value and
// how many bytes it took.
func variable(s string, env func(string) (string, bool)) (string, int, error) {
	name, n := "", 0
	if strings.HasPrefix(s, "${") {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0, fmt.Errorf("${ without its }")
		}
		name, n = s[2:end], end+1
	} else {
		j := 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || j > 1 && s[j] >= '0' && s[j] <= '9') {
			j++
		}
		name, n = s[1:j], j
	}
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		return "", 0, fmt.Errorf("%q is not an environment variable's name (letters, digits and _, not first a digit)", s[:max(n, 1)])
	}
	if env == nil {
		return "", 0, fmt.Errorf("environment variable %s is used, and none is given", name)
	}
	v, ok := env(name)
	if !ok {
		return "", 0, fmt.Errorf("environment variable %s is not given", name)
	}
	return v, n, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
