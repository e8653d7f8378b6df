// Package herdv1 is the wire: herd.proto and its generated code.
//
// The generated files are committed, so building Herd needs no protoc. To
// regenerate after editing herd.proto (protoc from Debian's
// protobuf-compiler; the Go plugins are pinned as tools in go.mod):
//
//	go generate ./api/herdv1
package herdv1

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. herd.proto"
