// Package haproxycfg reads haproxy configuration files into a typed model: the
// sections (global, defaults, frontend, backend, listen, and the others kept whole),
// each directive with its file and line, the defaults a proxy inherits, and typed
// views of what an import into Octavia maps — bind lines, server lines, timeouts,
// ACLs and backend switching rules.
//
// Words are split the way haproxy's configuration manual says (section 2.2,
// "Quoting and escaping"): spaces separate words; a backslash escapes a space,
// '#', a quote or itself (and \t, \n, \r, \xHH write those bytes); double quotes
// are weak (escapes and environment variables are still read inside them), single
// quotes strong (nothing is read inside); a '#' outside quotes starts a comment.
// An environment variable ("$NAME" or "${NAME}", in double quotes only) is taken
// from the Env a caller gives: one that is not there is an error, not an empty
// word as haproxy would make it, since a migration must not guess. A line ending
// in a backslash goes on at the next line (the form the manual uses for long
// lines, which configurations copied from it carry). Conditional blocks (.if,
// .elif, .else, .endif) depend on the machine haproxy starts on and are refused;
// the other dot directives (.notice, .warning, .alert, .diag) are kept as
// directives outside any section.
//
// Nothing is dropped: every directive of the input is in the model, at its file and
// line, for a mapping to say what became of it.
package haproxycfg
