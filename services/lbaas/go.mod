module github.com/hikkoshi/hikkoshi/services/lbaas

go 1.26.0

require (
	github.com/gophercloud/gophercloud/v2 v2.15.0
	github.com/hikkoshi/hikkoshi/platform v0.0.0-00010101000000-000000000000
	github.com/spf13/cobra v1.10.2
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)

replace (
	github.com/hikkoshi/hikkoshi/gen => ../../gen
	github.com/hikkoshi/hikkoshi/platform => ../../platform
)
