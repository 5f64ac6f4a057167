// Package bridge plans, applies and rolls back bridges between an old and a new
// cloud's networks (hikkoshi.netbridge.v1), and moves addresses across them.
//
// A plan is computed from both clouds' live state: what should exist is compared
// with what does, so applying again finishes a half-applied plan and never makes
// anything twice. Everything a bridge makes carries the description
// "hikkoshi-bridge:<id>", by which it is found again even if its record was lost.
package bridge
