package proxy

// BodyTooLarge is the message of the 413 given to a request body over the
// edge's limit (Config.MaxBodyBytes).
const BodyTooLarge = "The request body is larger than this edge accepts"

// RequestTimeout is the message of the 408 given to a request whose head
// took longer than the edge allows, or whose body went too long without a
// byte.
const RequestTimeout = "The request was not received in time"
