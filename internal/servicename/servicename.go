// Package servicename derives a service name from a well-known port, the one
// rule shared by the control plane (POST /v1/tunnels without a name) and the
// CLI (`connect expose` without --name).
package servicename

import (
	"regexp"
	"strconv"
)

// ForPort returns postgres, mysql, redis, mongodb, web or api for their
// usual ports, else service-<port>.
func ForPort(port int) string {
	switch port {
	case 5432:
		return "postgres"
	case 3306:
		return "mysql"
	case 6379:
		return "redis"
	case 27017:
		return "mongodb"
	case 3000:
		return "web"
	case 8080:
		return "api"
	}
	return "service-" + strconv.Itoa(port)
}

// Pattern is the rule for a service name, checked by the control plane
// (POST /v1/services, /v1/tunnels) and by the CLI before it calls it.
var Pattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)

// Rule describes Pattern to a user.
const Rule = "must be 1-100 characters of A-Z, a-z, 0-9, _ and -"

// Valid reports whether name follows Pattern.
func Valid(name string) bool { return Pattern.MatchString(name) }
