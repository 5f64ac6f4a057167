package cloud

import (
	"net/http"

	"github.com/gophercloud/gophercloud/v2"
)

// Observe wraps pc's HTTP transport so that observe is called after every API call
// (Keystone's included) with its method, path and status code (0 when no answer
// came). It lets a caller count calls per operation or export them as metrics.
func Observe(pc *gophercloud.ProviderClient, observe func(method, path string, code int)) {
	base := pc.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	pc.HTTPClient.Transport = observer{base, observe}
}

type observer struct {
	next    http.RoundTripper
	observe func(method, path string, code int)
}

func (o observer) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(r)
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	o.observe(r.Method, r.URL.Path, code)
	return resp, err
}
