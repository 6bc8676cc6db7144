module peertar

go 1.19
