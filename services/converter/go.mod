module github.com/hikkoshi/hikkoshi/services/converter

go 1.26.0

replace (
	github.com/hikkoshi/hikkoshi/gen => ../../gen
	github.com/hikkoshi/hikkoshi/platform => ../../platform
)

require (
	github.com/gophercloud/gophercloud/v2 v2.15.0
	github.com/hikkoshi/hikkoshi/gen v0.0.0-00010101000000-000000000000
	github.com/hikkoshi/hikkoshi/platform v0.0.0-00010101000000-000000000000
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261026165753-2ffab32bce7e // indirect
	google.golang.org/grpc v1.85.0 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)
