// Package deploy holds no code: it is a module of its own so that the libraries its tests parse the
// deployment files with (BuildKit, compose-go, kustomize, k8s.io/api, mvdan.cc/sh) stay out of the
// product's go.mod. Its tests check the Dockerfile, docker-compose.yml and the Kustomize manifests
// under deploy/ against a choreo binary built from the repository (see README.md, "How this is
// validated"); run them with `make test` or `cd deploy && go test ./...`.
package deploy
