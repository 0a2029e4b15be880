// Package servicename derives a service name from a well-known port, the one
// rule shared by the control plane (POST /v1/tunnels without a name) and the
// CLI (`connect expose` without --name).
package servicename

import "strconv"

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
