// Package haproxyimport maps an haproxy configuration (haproxycfg) onto Octavia's
// model and returns the mapping as a plan an operator reviews before anything is
// made: the load balancers, listeners, pools, members, health monitors, session
// persistence and L7 policies the configuration becomes, and a ledger with one
// entry for every directive of the input — mapped (and to which Octavia field) or
// left over (and why). Nothing is dropped without an entry; the plan is complete
// only when nothing is left over.
//
// The mapping reads haproxy as Octavia's own amphora driver writes it (its
// haproxy templates are the inverse of this mapping): a HOST_NAME rule is
// "req.hdr(host) -i", a PATH rule "path -m beg|end|sub|reg|str" (case-sensitive),
// HTTP_COOKIE persistence "cookie SRV insert indirect nocache", SOURCE_IP a stick
// table on src, APP_COOKIE "stick match req.cook(NAME)"; a listener's timeouts
// are the frontend's "timeout client" and its default backend's "timeout
// connect" and "timeout server"; "option forwardfor" is the X-Forwarded-For
// insert header. Planning needs no cloud: it reads the files only.
package haproxyimport
