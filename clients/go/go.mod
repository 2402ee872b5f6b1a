module github.com/s2s-relay/clients/go

go 1.19
