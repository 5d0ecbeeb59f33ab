module holdfast

go 1.26

require (
	github.com/hashicorp/yamux v0.1.2
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
)

require go.uber.org/multierr v1.10.0 // indirect
