package customer

import (
	"errors"
	"math"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/choreo-dev/choreo/internal/auth"
	"github.com/choreo-dev/choreo/internal/httpapi"
)

// Limits of the fields.
const (
	MinPassword = 8
	MaxPassword = 1024 // bytes: argon2 takes any length, but a huge one is only a way to burn CPU
	MaxName     = 200
	MaxEmail    = 254
)

func validEmail(email string) bool {
	if len(email) < 3 || len(email) > MaxEmail {
		return false
	}
	a, err := mail.ParseAddress(email)
	return err == nil && a.Name == "" && a.Address == email
}

func validName(name string) bool {
	return name != "" && utf8.RuneCountInString(name) <= MaxName && strings.IndexFunc(name, unicode.IsControl) < 0
}

// validate lists every invalid field of a registration (with email and name trimmed).
func (r Registration) validate() []httpapi.FieldError {
	var errs []httpapi.FieldError
	if !validEmail(r.Email) {
		errs = append(errs, httpapi.FieldError{Field: "email", Detail: "required: an address such as ada@example.com, at most 254 characters"})
	}
	if !validName(r.Name) {
		errs = append(errs, httpapi.FieldError{Field: "name", Detail: "required: 1-200 characters, no control characters"})
	}
	if utf8.RuneCountInString(r.Password) < MinPassword || len(r.Password) > MaxPassword {
		errs = append(errs, httpapi.FieldError{Field: "password", Detail: "required: at least 8 characters, at most 1024 bytes"})
	}
	return errs
}

func (s *Service) handleRegister(w http.ResponseWriter, r *http.Request) {
	var req Registration
	if p := httpapi.DecodeJSON(w, r, &req); p != nil {
		httpapi.WriteProblem(w, r, p)
		return
	}
	req.Email, req.Name = strings.TrimSpace(req.Email), strings.TrimSpace(req.Name)
	if errs := req.validate(); len(errs) > 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid(errs))
		return
	}
	c, err := s.Register(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/customers/"+c.ID.String())
	httpapi.WriteJSON(w, http.StatusCreated, c)
}

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Token is the answer of POST /v1/tokens (RFC 6749 5.1).
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"` // seconds
}

// handleToken exchanges an email and password for an access token. A wrong email and a wrong password get
// the same answer after the same work (an unknown email is checked against a dummy hash), and an email
// with repeated failures is refused for a while, whether or not it is registered.
func (s *Service) handleToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if p := httpapi.DecodeJSON(w, r, &req); p != nil {
		httpapi.WriteProblem(w, r, p)
		return
	}
	req.Email = strings.TrimSpace(req.Email)
	var errs []httpapi.FieldError
	if req.Email == "" || len(req.Email) > MaxEmail {
		errs = append(errs, httpapi.FieldError{Field: "email", Detail: "required, at most 254 characters"})
	}
	if req.Password == "" || len(req.Password) > MaxPassword {
		errs = append(errs, httpapi.FieldError{Field: "password", Detail: "required, at most 1024 bytes"})
	}
	if len(errs) > 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid(errs))
		return
	}
	if s.signer == nil {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusServiceUnavailable, "this service has no key to sign tokens with (AUTH_HMAC_SECRET or AUTH_SIGNING_KEY_FILE)"))
		return
	}
	key := strings.ToLower(req.Email)
	if ok, wait := s.failures.allow(key); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusTooManyRequests, "too many failed attempts for this email; retry after the Retry-After seconds"))
		return
	}
	creds, found, err := s.byEmail(r.Context(), req.Email)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hash := s.dummy
	if found {
		hash = creds.Hash
	}
	ok, err := s.check(r.Context(), req.Password, hash)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !ok || !found {
		s.failures.fail(key)
		w.Header().Set("WWW-Authenticate", `Bearer realm="choreo"`)
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusUnauthorized, "wrong email or password"))
		return
	}
	s.failures.succeed(key)
	token, err := s.signer.sign(creds.ID.String(), creds.Roles, s.clock())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, Token{AccessToken: token, TokenType: "Bearer", ExpiresIn: int(s.signer.cfg.TTL.Seconds())})
}

func (s *Service) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	httpapi.WriteJSON(w, http.StatusOK, s.signer.jwks())
}

// me is the customer the request's token names; ok=false after an answer was written.
func (s *Service) me(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="choreo"`)
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusUnauthorized, "this route needs the customer's bearer token (POST /v1/tokens)"))
		return uuid.UUID{}, false
	}
	id, err := uuid.Parse(p.Subject)
	if err != nil {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "the token's subject is no registered customer"))
		return uuid.UUID{}, false
	}
	return id, true
}

func (s *Service) handleGetMe(w http.ResponseWriter, r *http.Request) {
	id, ok := s.me(w, r)
	if !ok {
		return
	}
	a, err := s.Account(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, a.Customer)
}

func (s *Service) handlePatchMe(w http.ResponseWriter, r *http.Request) {
	id, ok := s.me(w, r)
	if !ok {
		return
	}
	var ch Change
	if p := httpapi.DecodeJSON(w, r, &ch); p != nil {
		httpapi.WriteProblem(w, r, p)
		return
	}
	var errs []httpapi.FieldError
	if ch.Email != nil {
		*ch.Email = strings.TrimSpace(*ch.Email)
		if !validEmail(*ch.Email) {
			errs = append(errs, httpapi.FieldError{Field: "email", Detail: "an address such as ada@example.com, at most 254 characters"})
		}
	}
	if ch.Name != nil {
		*ch.Name = strings.TrimSpace(*ch.Name)
		if !validName(*ch.Name) {
			errs = append(errs, httpapi.FieldError{Field: "name", Detail: "1-200 characters, no control characters"})
		}
	}
	if len(errs) > 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid(errs))
		return
	}
	a, err := s.Update(r.Context(), id, ch)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, a.Customer)
}

// pathID is the {id} of an operator route; ok=false after an answer was written.
func pathID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "no such customer"))
		return uuid.UUID{}, false
	}
	return id, true
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	a, err := s.Account(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, a)
}

// CreditLimit is the body of PUT /v1/customers/{id}/credit-limit.
type CreditLimit struct {
	LimitCents *int64 `json:"limit_cents"`
}

func (s *Service) handleCreditLimit(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var req CreditLimit
	if p := httpapi.DecodeJSON(w, r, &req); p != nil {
		httpapi.WriteProblem(w, r, p)
		return
	}
	if req.LimitCents == nil || *req.LimitCents < 0 {
		httpapi.WriteProblem(w, r, httpapi.Invalid([]httpapi.FieldError{{Field: "limit_cents", Detail: "required, at least 0"}}))
		return
	}
	a, err := s.SetCreditLimit(r.Context(), id, *req.LimitCents)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, a)
}

// Block is the optional body of POST /v1/customers/{id}/block.
type Block struct {
	Reason string `json:"reason"`
}

func (s *Service) handleBlock(blocked bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		var req Block
		if blocked && r.ContentLength != 0 {
			if p := httpapi.DecodeJSON(w, r, &req); p != nil {
				httpapi.WriteProblem(w, r, p)
				return
			}
			if len(req.Reason) > 500 {
				httpapi.WriteProblem(w, r, httpapi.Invalid([]httpapi.FieldError{{Field: "reason", Detail: "at most 500 characters"}}))
				return
			}
		}
		a, err := s.SetBlocked(r.Context(), id, blocked, req.Reason)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, a)
	}
}

// fail answers err: the store's domain errors as their statuses, anything else as a logged 500.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrEmailTaken):
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusConflict, "a customer with this email is registered already"))
	case errors.Is(err, ErrNotFound):
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "no such customer"))
	default:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("customer request failed")
		httpapi.WriteError(w, r, err)
	}
}
