package notification

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/retry"
)

// sendLoop mails due PENDING messages until ctx ends.
func (s *Service) sendLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollEvery)
	defer t.Stop()
	for {
		for {
			sent, err := s.sendOne(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("send notification")
			}
			if !sent || err != nil {
				break
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

type pending struct {
	OrderID, Outcome, Recipient, Subject, Body, CorrelationID string
	Attempts                                                  int
}

// sendOne mails the next due message and records the result in the same transaction that locked it, so two
// instances never mail the same message. A crash after the mail left but before the commit mails it again:
// the Message-ID is stable so that receiving systems can drop the duplicate.
func (s *Service) sendOne(ctx context.Context) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `SELECT order_id, outcome, recipient, subject, body, correlation_id, attempts FROM notifications
		WHERE status = 'PENDING' AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED`)
	if err != nil {
		return false, fmt.Errorf("find due notification: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[pending])
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find due notification: %w", err)
	}
	log := s.log.With().Str("order_id", n.OrderID).Str("correlation_id", n.CorrelationID).Logger()
	if sendErr := s.mail(ctx, n); sendErr != nil {
		n.Attempts++
		status := "PENDING"
		if n.Attempts >= s.cfg.MaxAttempts {
			status = "FAILED"
			log.Error().Err(sendErr).Int("attempts", n.Attempts).Msg("giving up on notification")
		} else {
			log.Warn().Err(sendErr).Int("attempts", n.Attempts).Msg("mail notification failed; will retry")
		}
		delay := retry.Backoff(n.Attempts, time.Second, 5*time.Minute)
		if _, err := tx.Exec(ctx, `UPDATE notifications SET attempts = $2, last_error = $3, status = $4, next_attempt_at = now() + make_interval(secs => $5) WHERE order_id = $1`,
			n.OrderID, n.Attempts, sendErr.Error(), status, delay.Seconds()); err != nil {
			return false, fmt.Errorf("record failed attempt for %s: %w", n.OrderID, err)
		}
		return false, tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, `UPDATE notifications SET status = 'SENT', attempts = attempts + 1, sent_at = now() WHERE order_id = $1`, n.OrderID); err != nil {
		return false, fmt.Errorf("mark %s sent: %w", n.OrderID, err)
	}
	if err := s.emit.EmitInSaga(ctx, tx, n.OrderID, n.CorrelationID, events.NotificationSent{OrderID: n.OrderID, Outcome: n.Outcome, Channel: "smtp"}); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit notification %s: %w", n.OrderID, err)
	}
	log.Info().Str("outcome", n.Outcome).Msg("customer notified by mail")
	return true, nil
}

// mail sends n over SMTP, bounded in time.
func (s *Service) mail(ctx context.Context, n pending) error {
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s.%s@choreo>\r\nDate: %s\r\n",
		s.cfg.SMTP.From, n.Recipient, n.Subject, n.OrderID, n.Outcome, time.Now().UTC().Format(time.RFC1123Z))
	msg.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	msg.WriteString(n.Body)

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.cfg.SMTP.Addr)
	if err != nil {
		return fmt.Errorf("dial smtp %s: %w", s.cfg.SMTP.Addr, err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	host, _, _ := net.SplitHostPort(s.cfg.SMTP.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp hello: %w", err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("smtp starttls: %w", err)
		}
	}
	if s.cfg.SMTP.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.cfg.SMTP.Username, s.cfg.SMTP.Password, host)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.Mail(s.cfg.SMTP.From); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(n.Recipient); err != nil {
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(msg.Bytes()); err != nil {
		return fmt.Errorf("smtp write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp end of data: %w", err)
	}
	return c.Quit()
}
