# frozen_string_literal: true

require "securerandom"

module BerryMQ
  # The in-process message bus: receivers, dispatch, and the connections to nodes that
  # messages are forwarded to. BerryMQ.bus is the process's bus; the module functions
  # (BerryMQ.twitter, ...) use it.
  #
  # Receivers run in the sender's thread, in registration order, before twitter returns.
  # The list of receivers is copied on write, so sending takes no lock.
  class Bus
    # The default logger: "berrymq: LEVEL: text" lines on $stderr. (Not the standard
    # library's Logger, so that a program may name its own class Logger, as the original
    # berryMQ's sample does.)
    class StderrLog
      def warn(text)
        $stderr.puts("berrymq: warning: #{text}")
      end

      def error(text)
        $stderr.puts("berrymq: error: #{text}")
      end
    end

    HOP_LIMIT = 32
    SEEN_LIMIT = 100_000

    attr_reader :node_id
    # When true, receivers' exceptions are raised from twitter (as ReceiverErrors) after
    # every receiver ran; when false (the default) they are logged.
    attr_accessor :raise_errors
    attr_writer :logger

    def initialize(raise_errors: false, logger: nil)
      @raise_errors = raise_errors
      @logger = logger
      @node_id = SecureRandom.hex(8)
      # the start of the uids of this bus's asks: 8 URL-safe characters (48 random bits)
      @uid_prefix = SecureRandom.urlsafe_base64(6)
      @lock = Mutex.new
      @subscriptions = [].freeze
      @connections = [].freeze
      @seen = {}
      @counter = 0
      @losses = Hash.new(0)
      @lost_total = 0
      @flushed_total = 0
      @lost_links = {}.freeze # url -> an interconnection lost and not made again
      @loss_logged_at = nil
    end

    # Where receivers' errors, dropped loops and lost connections are reported: any object
    # with #warn and #error taking a String (a ::Logger works); by default $stderr lines.
    def logger
      @logger ||= StderrLog.new
    end

    # -- receivers ------------------------------------------------------------------------

    def subscribe(subscription)
      @lock.synchronize { @subscriptions = (@subscriptions + [subscription]).freeze }
      subscription
    end

    def unsubscribe(subscription)
      @lock.synchronize { @subscriptions = (@subscriptions - [subscription]).freeze }
    end

    # Stops every receiver of +object+ (a Follower instance or class, a block, a Queue);
    # returns how many there were.
    def unfollow(object)
      return (unsubscribe(object) && 1) || 0 if object.is_a?(Subscription)

      @lock.synchronize do
        gone, kept = @subscriptions.partition { |s| s.for?(object) }
        @subscriptions = kept.freeze
        gone.size
      end
    end

    def subscriptions
      @subscriptions.select(&:alive?)
    end

    # -- sending --------------------------------------------------------------------------

    # Sends a message: every matching receiver here is called, then (unless the name is
    # local) it is forwarded to every interconnected node.
    def twitter(identifier, *args, **kwargs)
      publish(Message.new(identifier, args, kwargs), nil)
    end

    # Delivers +message+ here and forwards it to interconnections other than +origin+.
    def publish(message, origin)
      depth = Thread.current[:berrymq_depth] || 0
      if depth + message.hops >= HOP_LIMIT
        logger.warn("message #{message.identifier} dropped: it went round #{HOP_LIMIT} " \
                    "times (a receiver sending what it receives?)")
        return
      end
      errors = deliver(message, depth)
      forward(message, origin) unless message.identifier.local?
      raise_if(errors)
      nil
    end

    # A message that came from a node: delivered once per uid, then passed on to other
    # interconnections with one hop more.
    def receive(message, origin)
      return if message.uid && !first_time?(message.uid)

      publish(message, origin)
    end

    # The return values of this process's receivers of +message+ (in registration order);
    # a receiver that raised gives a ReplyError in its place.
    def ask_local(message)
      replies = []
      @subscriptions.each do |sub|
        next unless sub.answers? && sub.pattern.matches(message.identifier)

        begin
          called, value = sub.call(message)
          replies << value if called
        rescue StandardError => e
          replies << ReplyError.new(e.class.name, e.message, sub.describe, @node_id)
        end
      end
      replies
    end

    # A new uid in the form a node gives its messages (docs/protocol.md, extras): this
    # bus's 8 characters and 12 random URL-safe ones, 20 in all. BerryMQ.ask sends one per
    # call over every connection, so that a node reached by several of them runs its
    # receivers once. It counts as seen here: a node asking it back gets no replies.
    def new_uid
      uid = @uid_prefix + SecureRandom.urlsafe_base64(9)
      first_time?(uid)
      uid
    end

    # Whether +uid+ is new here (it is remembered from now on): what a node sends (a
    # message, an ask) is delivered once per uid.
    def first_sight?(uid)
      first_time?(uid)
    end

    # -- connections ----------------------------------------------------------------------

    def connections
      @connections
    end

    # The connection that was last lost (the node went away under it) and why, until a
    # connection is made or closed: the module's calls then name that node, not only that
    # no connection is open.
    attr_reader :lost

    def track(connection)
      @lock.synchronize do
        @connections = (@connections + [connection]).freeze
        @lost = nil
        @lost_links = @lost_links.reject { |url, _| url == connection.url }.freeze if interconnection?(connection)
      end
    end

    # Forgets +connection+; +lost+: the error that ended it, when the node went away. A
    # lost interconnection is remembered until it is closed or made again: what twitter
    # would have forwarded to it is counted as lost (and flush returns false).
    def untrack(connection, lost: nil)
      @lock.synchronize do
        @connections = (@connections - [connection]).freeze
        @lost = lost && [connection, lost]
        @lost_links = @lost_links.merge(connection.url => connection).freeze if lost && interconnection?(connection)
      end
    end

    def interconnection?(connection)
      connection.respond_to?(:style) && connection.style == :interconnect
    end

    # Forgets a lost interconnection (it was closed).
    def forget_lost(connection)
      @lock.synchronize do
        @lost_links = @lost_links.reject { |_, c| c.equal?(connection) }.freeze
      end
    end

    # The interconnections that were lost and not made again nor closed, by URL.
    def lost_links
      @lost_links
    end

    # Counts +count+ messages lost for +reason+ (the outboxes of interconnections call it).
    def count_loss(reason, count)
      @lock.synchronize do
        @losses[reason] += count
        @lost_total += count
      end
    end

    # Every message lost so far (refused by a node, or not sent), by reason.
    def losses
      @lock.synchronize { @losses.dup }
    end

    # Whether messages were lost since the last call (BerryMQ.flush asks).
    def lost_since_flush?
      @lock.synchronize do
        (@lost_total != @flushed_total).tap { @flushed_total = @lost_total }
      end
    end

    # Closes every connection (the lost ones too, which count what they held as lost) and
    # forgets every receiver.
    def close
      Bus.close_together((@lost_links.values + @connections).reverse)
      @lock.synchronize { @subscriptions = [].freeze }
    end

    # Closes +connections+ side by side, each in a thread of its own, and returns once all
    # are closed: each waits at most Connection::CLOSE_TIMEOUT for its node (an
    # interconnection first sends what is queued), so several nodes that stopped answering
    # cost that once, not once per connection (at exit too). The first error a close
    # raised is raised after all of them ran.
    def self.close_together(connections)
      return connections.each(&:close) if connections.size < 2

      closing = connections.map do |connection|
        Thread.new do
          Thread.current.report_on_exception = false
          connection.close
          nil
        rescue StandardError => e
          e
        end
      end
      error = closing.map(&:value).compact.first
      raise error if error
    end

    private

    def deliver(message, depth)
      errors = nil
      Thread.current[:berrymq_depth] = depth + 1
      @subscriptions.each do |sub|
        next unless sub.pattern.matches(message.identifier)

        begin
          sub.call(message)
        rescue StandardError => e
          (errors ||= []) << e
        end
      end
      errors
    ensure
      Thread.current[:berrymq_depth] = depth
    end

    def forward(message, origin)
      not_forwarded(message) unless @lost_links.empty?
      links = @connections.select { |c| c.interconnected? && !c.equal?(origin) }
      return if links.empty?

      unless message.uid
        uid = "#{@node_id}-#{@lock.synchronize { @counter += 1 }}"
        first_time?(uid)
        message = Message.new(message.identifier, message.args, message.kwargs, uid: uid)
      end
      links.each { |link| link.forward(message) }
    end

    # +message+ would have gone to the interconnections that were lost: counted as lost,
    # logged at most once a second.
    def not_forwarded(message)
      lost = @lost_links
      count_loss("not sent: connection failed or closed", lost.size)
      now = BerryMQ.monotonic
      return if @loss_logged_at && now - @loss_logged_at < 1

      @loss_logged_at = now
      logger.error("message #{message.identifier} was not forwarded to #{lost.keys.join(', ')}: the " \
                   "interconnection is lost (interconnect again, or close_connection to stop this)")
    end

    def first_time?(uid)
      @lock.synchronize do
        return false if @seen.key?(uid)

        @seen.shift if @seen.size >= SEEN_LIMIT
        @seen[uid] = true
      end
    end

    def raise_if(errors)
      return unless errors

      full = errors.find { |e| e.is_a?(QueueFull) }
      raise full if full && errors.size == 1
      raise ReceiverErrors, errors if @raise_errors || full

      errors.each do |e|
        logger.error("a receiver raised #{e.class}: #{e.message}\n#{e.backtrace&.first(5)&.join("\n")}")
      end
    end
  end
end
